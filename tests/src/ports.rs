//! Free loopback ports for test servers.
//!
//! Ports come from below the kernel's ephemeral range (32768 and up on Linux), so no
//! outgoing connection and no `bind(0)` elsewhere can be handed the same port between the
//! moment it is chosen and the moment a server binds it; a process-wide counter (started
//! at an offset from the process id) never hands out a port twice, and each candidate is
//! checked by binding it. Parallel tests in one process therefore never collide, and test
//! processes started one after another mostly start in different places.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

const FIRST: u32 = 20_000;
const END: u32 = 32_000;

fn counter() -> &'static AtomicU32 {
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    NEXT.get_or_init(|| AtomicU32::new((std::process::id() % 600) * 20))
}

pub fn free_port() -> u16 {
    let span = END - FIRST;
    for _ in 0..span {
        let port = FIRST + counter().fetch_add(1, Ordering::Relaxed) % span;
        let port = u16::try_from(port).expect("port in range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{END}");
}
