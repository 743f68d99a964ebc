//! `kubectl-svcat`: the same program, named so that `kubectl svcat ...` finds it on PATH.
fn main() -> std::process::ExitCode {
    svcat::main_with_args()
}
