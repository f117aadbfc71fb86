//! A stand-alone worker process for nfsha-sys's integration tests (the test binary
//! cannot be `nfsha`; production uses `nfsha __worker`, which runs the same loop).

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(nfsha_sys::worker::worker_main())
}
