//! Runs scoring and commands inside a pyfunc-env environment.
