//! `svcat`: see the `svcat` library.
fn main() -> std::process::ExitCode {
    svcat::main_with_args()
}
