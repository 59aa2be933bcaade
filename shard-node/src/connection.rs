//! One client connection. (Owned by the data-path work.)
