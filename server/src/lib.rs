//! glimpse edge server
