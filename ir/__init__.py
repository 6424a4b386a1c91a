"""The intermediate representation: dtypes, tensor types, op schemas and type rules."""
