//! The node ingress's own HTTP/1 framing: heads read with httparse and checked against request
//! smuggling ([`head`]), chunked bodies decoded as they arrive ([`chunked`]). Pure code, no
//! I/O, and few dependencies, so that it is fuzzed alone (`fuzz/`); the connection that uses it
//! is the agent's `ingress::forward`.

pub mod chunked;
pub mod head;
