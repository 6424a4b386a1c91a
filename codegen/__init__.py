"""Code generation: the backend-neutral kernel spec (spec.py) and the backends that emit it,
llvm/ (native CPU code through llvmlite) and cuda/ (CUDA C source). codegen imports only ir
and errors; the runtime imports codegen, never the other way round."""
