//! Free loopback ports. The OS picks each one (bind to port 0), so tests running in
//! parallel, in this process or others, do not collide.

use std::net::TcpListener;

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}
