"""Generated from buildit.proto by `make proto`; do not edit."""
