//! (being written by the MRZ-parse engineer)
