//! hutch's image builder: Dockerfile parsing, the build graph, the build
//! cache, layer diffs from overlay upper dirs and build outputs.
