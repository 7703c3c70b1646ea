//! libttm: placeholder, see issue 3.
