//! Reading request bodies the way DRF does: multipart forms (files and text fields), and for the
//! token endpoints also JSON or url-encoded forms.

use std::collections::BTreeMap;

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;
use bytes::Bytes;

use super::error::ApiError;

/// An uploaded file part.
#[derive(Clone)]
pub struct FilePart {
    pub bytes: Bytes,
}

/// A parsed multipart form: file parts and text parts by field name (first value wins).
#[derive(Default)]
pub struct Form {
    pub files: BTreeMap<String, FilePart>,
    pub texts: BTreeMap<String, String>,
}

/// The request's media type, lower-cased (media types are case-insensitive, RFC 9110 §8.3.1),
/// with its parameters.
fn content_type(req: &Request) -> String {
    req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase()
}

fn multipart_error(err: axum::extract::multipart::MultipartError) -> ApiError {
    if err.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::BadRequest(format!("Multipart form parse error - {}", err.body_text()))
    }
}

impl Form {
    /// Parses a `multipart/form-data` body; any other content type is a 415, as in DRF.
    pub async fn from_multipart(req: Request) -> Result<Self, ApiError> {
        let ct = content_type(&req);
        if !ct.starts_with("multipart/form-data") {
            return Err(ApiError::UnsupportedMediaType(ct.split(';').next().unwrap_or("").trim().to_string()));
        }
        let mut multipart = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::BadRequest(format!("Multipart form parse error - {}", e.body_text())))?;
        let mut form = Form::default();
        let mut first = true;
        loop {
            let next = multipart.next_field().await;
            // A form with no parts at all (`--boundary--` alone, as clients send an empty form)
            // is an empty form, as in Django: every required field is then reported missing.
            let next = match next {
                Err(e) if first && e.body_text().contains("incomplete multipart stream") => None,
                other => other.map_err(multipart_error)?,
            };
            first = false;
            let Some(field) = next else { break };
            let Some(name) = field.name().map(str::to_string) else { continue };
            let is_file = field.file_name().is_some();
            let bytes = field_bytes(field).await?;
            if is_file {
                form.files.entry(name).or_insert(FilePart { bytes });
            } else {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                form.texts.entry(name).or_insert(text);
            }
        }
        Ok(form)
    }

    /// Text fields from JSON, url-encoded or multipart bodies (the token endpoints take any).
    pub async fn text_fields(req: Request) -> Result<BTreeMap<String, String>, ApiError> {
        let ct = content_type(&req);
        if ct.starts_with("multipart/form-data") {
            return Ok(Self::from_multipart(req).await?.texts);
        }
        let body = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        if ct.starts_with("application/json") {
            let value: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("JSON parse error - {e}")))?;
            let obj = value.as_object().ok_or_else(|| ApiError::BadRequest("JSON parse error - expected an object".into()))?;
            return Ok(obj
                .iter()
                .filter_map(|(k, v)| match v {
                    serde_json::Value::String(s) => Some((k.clone(), s.clone())),
                    serde_json::Value::Null => None,
                    other => Some((k.clone(), other.to_string())),
                })
                .collect());
        }
        if ct.starts_with("application/x-www-form-urlencoded") {
            return Ok(url_decode_form(&body));
        }
        Err(ApiError::UnsupportedMediaType(ct.split(';').next().unwrap_or("").trim().to_string()))
    }
}

/// A part's bytes in one allocation of exactly their size. `Field::bytes` grows a buffer by
/// doubling (up to twice an image's size, held as long as the task holds its upload), and a
/// part's chunks are slices of the parser's buffer, which they would keep alive.
async fn field_bytes(mut field: axum::extract::multipart::Field<'_>) -> Result<Bytes, ApiError> {
    let mut chunks = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        chunks.push(chunk);
    }
    let mut bytes = Vec::with_capacity(chunks.iter().map(Bytes::len).sum());
    for chunk in &chunks {
        bytes.extend_from_slice(chunk);
    }
    Ok(Bytes::from(bytes))
}

/// Minimal `application/x-www-form-urlencoded` decoding (first value per key).
fn url_decode_form(body: &[u8]) -> BTreeMap<String, String> {
    fn unescape(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push((h * 16 + l) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    let text = String::from_utf8_lossy(body);
    let mut map = BTreeMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.entry(unescape(k)).or_insert_with(|| unescape(v));
    }
    map
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_form_decodes() {
        let m = super::url_decode_form(b"username=a%20b&password=p+w&x=%zz&username=again");
        assert_eq!(m["username"], "a b");
        assert_eq!(m["password"], "p w");
        assert_eq!(m["x"], "%zz");
    }
}
