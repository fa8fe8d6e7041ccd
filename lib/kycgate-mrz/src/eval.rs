//! (being written by the MRZ-read engineer)
