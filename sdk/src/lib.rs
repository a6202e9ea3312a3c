//! The glimpse browser SDK.
