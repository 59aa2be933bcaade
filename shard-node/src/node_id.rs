//! Node id kept in the data directory. (Owned by the cluster work.)
