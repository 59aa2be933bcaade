//! Helpers the end-to-end tests share: starting a cluster, talking RESP, polling until ready.
