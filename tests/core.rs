//! Issue 2: the core API, the seed labs, down, rollback, bad input.

use crate::support::*;
