//! Tests of what the CLI renders without running it: the generated CLI reference and error
//! reports (kept out of `src/`, which holds only the CLI itself).

mod reference;
mod report;
