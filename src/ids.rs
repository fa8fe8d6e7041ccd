//! Random UUIDs from the thread's CSPRNG.
//!
//! `Uuid::new_v4` asks the kernel (`getrandom`) for every id, and a `kyc_passport` task made
//! six to eight of them (request id, task id, each vendor request's template scope, multipart
//! boundaries, the JSON image nonce): six system calls per task measured with `strace -c`,
//! which are not cheap on a virtual machine. `rand::rng()` is a ChaCha12 generator seeded from
//! the OS and reseeded periodically, so these ids are as unguessable, without the calls.

use uuid::Uuid;

/// A version 4 (random) UUID.
pub fn new_v4() -> Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_version_4_rfc_4122_and_differ() {
        let (a, b) = (super::new_v4(), super::new_v4());
        assert_eq!(a.get_version_num(), 4);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(a, b);
    }
}
