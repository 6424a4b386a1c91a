"""The intermediate representation: dtypes, tensor types and symbolic sizes, op schemas and type
rules, the SSA graph (graph.py) with its text form (printer.py, parser.py), verifier, JSON form
(serialize.py), and the passes over it (passes/)."""
