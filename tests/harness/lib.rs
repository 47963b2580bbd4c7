//! Test harness shared by the scenario tests (processes, namespaces, checkers).
