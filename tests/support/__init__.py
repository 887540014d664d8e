"""Test support outside the wheel: a loopback Hugging Face-compatible server and model generators,
run by the tests, the demo and the benches (`python -m tests.support`)."""
