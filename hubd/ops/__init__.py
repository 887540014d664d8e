"""The use cases, one verb per module: record and fetch are the shared lower stage that mirror,
publish, import and repair build on."""
