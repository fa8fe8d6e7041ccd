//! How a queued input is kept outside the process: a small JSON header (everything but the
//! images) beside each image as raw bytes, by role. No base64: Redis keeps the images as hash
//! fields, the memory store's spill files as length-prefixed blobs.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StoreError;
use crate::tasks::{ServiceInput, ServiceKind, TaskInput};

/// The header's format version; anything else is `Corrupt`.
const VERSION: u8 = 2;

/// The Redis input hash field holding the header (`submit.lua` writes the same name).
pub(super) const HEADER_FIELD: &str = "header";

/// The Redis input hash field of each image: this prefix and its role.
pub(super) const IMAGE_FIELD_PREFIX: &str = "img:";

/// The Redis input hash field of an image read late (see [`reads_late`]): this prefix and its
/// role. A claim's `HMGET` of the `img:` fields leaves it where it is.
pub(super) const LATE_FIELD_PREFIX: &str = "late:";

/// Whether a store that can (Redis) leaves this image out of a claimed input, for the pipeline
/// to read when it needs it: the selfie of a `kyc_*` task, checked only once document OCR is
/// done. A running task then holds only the images its current step needs (a worker holding
/// both images of a `kyc_passport` through OCR was 62% of the gateway's heap at the
/// 10,000-in-flight peak, docs/PERFORMANCE.md).
pub(crate) fn reads_late(service: ServiceKind, role: &str) -> bool {
    role == "selfie" && matches!(service, ServiceKind::KycPassport | ServiceKind::KycCard)
}

/// The Redis input hash field an image is kept in.
pub(super) fn image_field(service: ServiceKind, role: &str) -> String {
    let prefix = if reads_late(service, role) { LATE_FIELD_PREFIX } else { IMAGE_FIELD_PREFIX };
    format!("{prefix}{role}")
}

/// Every role an input can have, as `from_roles` asks for them.
pub(super) const ROLES: [&str; 4] = ["selfie", "passport", "front", "back"];

/// Magic at the start of a spill file.
const SPILL_MAGIC: &[u8; 4] = b"KYC2";

/// The non-image part of a [`TaskInput`].
#[derive(Serialize, Deserialize)]
struct Header {
    v: u8,
    service: ServiceKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    face: Option<Uuid>,
    owner: String,
    extend_data: bool,
    #[serde(default)]
    trace_context: Option<String>,
    #[serde(default)]
    base_url: Option<String>,
}

/// An input split for storage: its JSON header and its images by role.
pub(super) struct Split<'a> {
    pub(super) header: String,
    pub(super) images: Vec<(&'static str, &'a Bytes)>,
}

pub(super) fn split(input: &TaskInput) -> Split<'_> {
    let header = Header {
        v: VERSION,
        service: input.upload.kind(),
        face: input.upload.face(),
        owner: input.owner.clone(),
        extend_data: input.extend_data,
        trace_context: input.trace_context.clone(),
        base_url: input.base_url.clone(),
    };
    // Serialising plain strings, bools and a UUID cannot fail.
    let header = serde_json::to_string(&header).unwrap_or_default();
    Split { header, images: input.upload.images() }
}

/// Rebuilds an input from its header and its images by role, where images read late (see
/// [`reads_late`]) may be missing: they come back empty, and the answer says whether any did.
pub(super) fn join_early(
    header: &[u8],
    mut image: impl FnMut(&'static str) -> Option<Bytes>,
) -> Result<(TaskInput, bool), StoreError> {
    let mut missing = Vec::new();
    let input = join(header, |role| {
        image(role).or_else(|| {
            missing.push(role);
            Some(Bytes::new())
        })
    })?;
    if missing.iter().any(|role| !reads_late(input.service(), role)) {
        return Err(StoreError::Corrupt("input is missing an image".into()));
    }
    Ok((input, !missing.is_empty()))
}

/// Rebuilds an input from its header and a lookup of images by role.
pub(super) fn join(header: &[u8], image: impl FnMut(&'static str) -> Option<Bytes>) -> Result<TaskInput, StoreError> {
    let header: Header =
        serde_json::from_slice(header).map_err(|e| StoreError::Corrupt(format!("input header: {e}")))?;
    if header.v != VERSION {
        return Err(StoreError::Corrupt(format!("input format version {}", header.v)));
    }
    let upload = ServiceInput::from_roles(header.service, header.face, image)
        .ok_or_else(|| StoreError::Corrupt("input is missing an image".into()))?;
    Ok(TaskInput {
        upload,
        owner: header.owner,
        extend_data: header.extend_data,
        trace_context: header.trace_context,
        base_url: header.base_url,
    })
}

/// A spill file: magic, then the header and each `role, image` as u32-length-prefixed blobs.
pub(super) fn to_file(input: &TaskInput) -> Vec<u8> {
    let split = split(input);
    let size = 4 + 4 + split.header.len() + split.images.iter().map(|(r, b)| 8 + r.len() + b.len()).sum::<usize>();
    let mut out = BytesMut::with_capacity(size);
    out.put_slice(SPILL_MAGIC);
    let mut blob = |b: &[u8]| {
        out.put_u32(b.len() as u32);
        out.put_slice(b);
    };
    blob(split.header.as_bytes());
    for (role, bytes) in &split.images {
        blob(role.as_bytes());
        blob(bytes);
    }
    out.to_vec()
}

/// Reads a spill file back; images share the file's buffer (no copy).
pub(super) fn from_file(mut file: Bytes) -> Result<TaskInput, StoreError> {
    let corrupt = || StoreError::Corrupt("truncated spill file".into());
    if file.len() < 4 || &file[..4] != SPILL_MAGIC {
        return Err(StoreError::Corrupt("not a spill file".into()));
    }
    file.advance(4);
    let blob = |file: &mut Bytes| -> Result<Bytes, StoreError> {
        if file.remaining() < 4 {
            return Err(corrupt());
        }
        let n = file.get_u32() as usize;
        if file.remaining() < n {
            return Err(corrupt());
        }
        Ok(file.split_to(n))
    };
    let header = blob(&mut file)?;
    let mut images = Vec::new();
    while file.has_remaining() {
        let role = blob(&mut file)?;
        let bytes = blob(&mut file)?;
        images.push((role, bytes));
    }
    join(&header, |role| images.iter().find(|(r, _)| r.as_ref() == role.as_bytes()).map(|(_, b)| b.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> TaskInput {
        TaskInput {
            upload: ServiceInput::AuthenticateFace { selfie: Bytes::from_static(b"\xff\xd8\x00jpeg"), face: Uuid::new_v4() },
            owner: "alice".into(),
            extend_data: true,
            trace_context: Some("00-abc-def-01".into()),
            base_url: None,
        }
    }

    #[test]
    fn spill_files_round_trip_and_reject_damage() {
        let inp = input();
        let file = to_file(&inp);
        assert_eq!(from_file(Bytes::from(file.clone())).expect("decodes"), inp);
        for cut in [0, 3, 10, file.len() - 1] {
            assert!(from_file(Bytes::copy_from_slice(&file[..cut])).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn headers_carry_no_image_bytes() {
        let inp = input();
        let split = split(&inp);
        assert!(!split.header.contains("jpeg"), "{}", split.header);
        assert_eq!(split.images.len(), 1);
        let images: Vec<(&str, Bytes)> = split.images.iter().map(|(r, b)| (*r, (*b).clone())).collect();
        let back = join(split.header.as_bytes(), |r| images.iter().find(|(k, _)| *k == r).map(|(_, b)| b.clone()));
        assert_eq!(back.expect("joins"), inp);
        assert!(join(br#"{"v":1}"#, |_| None).is_err(), "old or foreign headers are corrupt");
    }
}
