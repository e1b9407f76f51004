//! Arbitrary bytes through the startup-packet decoder: no panics, and the
//! buffer never grows past Postgres's own startup packet limit.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wire::startup::{decode_startup, StartupPacket, MAX_STARTUP_PACKET};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match decode_startup(&mut buf) {
            Ok(Some(p)) => {
                assert!(buf.len() < before, "a packet consumes bytes");
                assert!(before - buf.len() <= MAX_STARTUP_PACKET);
                if let StartupPacket::Startup { major, params, .. } = &p {
                    assert_eq!(*major, 3);
                    for (k, v) in params {
                        assert!(!k.is_empty());
                        assert!(!k.contains('\0') && !v.contains('\0'));
                    }
                }
            }
            Ok(None) => {
                assert_eq!(buf.len(), before);
                assert!(buf.capacity() <= (MAX_STARTUP_PACKET.max(data.len())) * 2);
                break;
            }
            Err(_) => break,
        }
    }
});
