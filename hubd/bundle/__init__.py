"""The air gap: a bundle's format (index and listing), export, and an import that checks every
byte before anything becomes visible."""
