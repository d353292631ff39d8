//! Fuzzes the frame decoder: one-shot and streaming decoding agree with each other and with
//! the encoder, for frames and field vectors, and never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    btcmpc_engine::node::frame::check_decoders(data);
});
