//! (being written) The quickstart pipeline.
