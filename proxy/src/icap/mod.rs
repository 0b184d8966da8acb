pub mod handler;
pub mod http;
pub mod matrix;
pub mod response;
#[cfg(test)]
mod testing;
pub mod wire;
