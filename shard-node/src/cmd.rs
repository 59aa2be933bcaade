//! Commands, one file per family. (Owned by the data-path work.)
