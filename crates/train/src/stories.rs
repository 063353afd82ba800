//! (being written) A generator of simple stories from a grammar: the built-in quickstart corpus.
