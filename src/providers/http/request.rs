//! Builds the vendor HTTP request for one sub-call from a validated endpoint.

use base64::Engine as _;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use super::validate::{Endpoint, ResolvedAuth, ValidatedHttpSpec};
use crate::providers::spec::{BodySpec, ImageEncoding, ImageSource};
use crate::providers::{Image, ProviderError, SubCall};

/// The image a body slot refers to; `None` for an absent optional page (`back`).
fn image_for(call: &SubCall, source: ImageSource) -> Result<Option<&Image>, ProviderError> {
    let mismatch = || ProviderError::Config(format!("image source {source:?} does not exist in a {} call", call.kind()));
    match (call, source) {
        (SubCall::Liveness { image }, ImageSource::Image) => Ok(Some(image)),
        (SubCall::FaceCompare { probe, .. }, ImageSource::Probe) => Ok(Some(probe)),
        (SubCall::FaceCompare { reference, .. }, ImageSource::Reference) => Ok(Some(reference)),
        (SubCall::DocumentOcr { pages }, ImageSource::Front) => pages.first().map(Some).ok_or_else(mismatch),
        (SubCall::DocumentOcr { pages }, ImageSource::Back) => Ok(pages.get(1)),
        _ => Err(mismatch()),
    }
}

fn extension(mime: &str) -> &'static str {
    match mime {
        "image/png" => "png",
        _ => "jpg",
    }
}

/// Builds the request (not sent). Secrets go only where the adapter put them.
pub(crate) fn build(
    client: &reqwest::Client,
    spec: &ValidatedHttpSpec,
    ep: &Endpoint,
    call: &SubCall,
) -> Result<reqwest::RequestBuilder, ProviderError> {
    let mut url = ep.url.clone();
    if let ResolvedAuth::Query(params) = &spec.auth {
        url.query_pairs_mut().extend_pairs(params.iter().map(|(k, v)| (k.as_str(), v.expose())));
    }
    let mut req = client.request(ep.method.clone(), url).headers(ep.headers.clone());
    match &spec.auth {
        ResolvedAuth::Header(name, value) => req = req.header(name.clone(), value.clone()),
        ResolvedAuth::Basic(user, pass) => req = req.basic_auth(user.expose(), Some(pass.expose())),
        ResolvedAuth::None | ResolvedAuth::Fields(_) | ResolvedAuth::Query(_) => {}
    }
    let auth_fields: &[(String, super::validate::Secret)] = match &spec.auth {
        ResolvedAuth::Fields(f) => f,
        _ => &[],
    };
    let b64 = base64::engine::general_purpose::STANDARD;

    match &ep.body {
        BodySpec::Multipart { images, fields } => {
            let mut form = Form::new();
            for (k, v) in auth_fields {
                form = form.text(k.clone(), v.expose().to_string());
            }
            for (k, v) in fields {
                form = form.text(k.clone(), v.clone());
            }
            for slot in images {
                let Some(image) = image_for(call, slot.source)? else { continue };
                form = match slot.encoding {
                    ImageEncoding::Base64 => form.text(slot.field.clone(), b64.encode(&image.bytes)),
                    ImageEncoding::File => {
                        let filename =
                            slot.filename.clone().unwrap_or_else(|| format!("{}.{}", slot.field, extension(image.mime)));
                        let part = Part::stream_with_length(reqwest::Body::from(image.bytes.clone()), image.bytes.len() as u64)
                            .file_name(filename)
                            .mime_str(image.mime)
                            .map_err(|e| ProviderError::Config(format!("image content type: {e}")))?;
                        form.part(slot.field.clone(), part)
                    }
                };
            }
            Ok(req.multipart(form))
        }
        BodySpec::Json { images, fields } => {
            let mut body = serde_json::to_value(fields)
                .map_err(|e| ProviderError::Config(format!("body.fields cannot be JSON: {e}")))?;
            if let Value::Object(map) = &mut body {
                for (k, v) in auth_fields {
                    map.insert(k.clone(), Value::String(v.expose().to_string()));
                }
            }
            for slot in images {
                let Some(image) = image_for(call, slot.source)? else { continue };
                set_pointer(&mut body, &slot.pointer, Value::String(b64.encode(&image.bytes)))?;
            }
            Ok(req.json(&body))
        }
    }
}

/// Writes `value` at a JSON pointer, creating objects (and arrays, for numeric segments) on the
/// way.
pub(crate) fn set_pointer(root: &mut Value, pointer: &str, value: Value) -> Result<(), ProviderError> {
    let segments: Vec<String> =
        pointer.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect();
    let Some((last, parents)) = segments.split_last() else {
        *root = value;
        return Ok(());
    };
    let mut cur = root;
    for (i, seg) in parents.iter().enumerate() {
        let next_is_index = segments[i + 1].parse::<usize>().is_ok();
        cur = step(cur, seg, next_is_index, pointer)?;
    }
    match cur {
        Value::Object(map) => {
            map.insert(last.clone(), value);
        }
        Value::Array(items) => {
            let idx = last.parse::<usize>().map_err(|_| bad_pointer(pointer))?;
            if idx < items.len() {
                items[idx] = value;
            } else if idx == items.len() {
                items.push(value);
            } else {
                return Err(bad_pointer(pointer));
            }
        }
        _ => return Err(bad_pointer(pointer)),
    }
    Ok(())
}

fn step<'a>(cur: &'a mut Value, seg: &str, next_is_index: bool, pointer: &str) -> Result<&'a mut Value, ProviderError> {
    let fresh = || if next_is_index { Value::Array(Vec::new()) } else { Value::Object(Default::default()) };
    match cur {
        Value::Object(map) => Ok(map.entry(seg.to_string()).or_insert_with(fresh)),
        Value::Array(items) => {
            let idx = seg.parse::<usize>().map_err(|_| bad_pointer(pointer))?;
            if idx == items.len() {
                items.push(fresh());
            }
            items.get_mut(idx).ok_or_else(|| bad_pointer(pointer))
        }
        _ => Err(bad_pointer(pointer)),
    }
}

fn bad_pointer(pointer: &str) -> ProviderError {
    ProviderError::Config(format!("cannot place an image at JSON pointer `{pointer}` in the body"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_pointer_creates_objects_and_arrays() {
        let mut v = json!({"processParam": {"scenario": "FullProcess"}});
        set_pointer(&mut v, "/List/0/ImageData/image", json!("AAA")).unwrap();
        set_pointer(&mut v, "/SourceImage/Bytes", json!("BBB")).unwrap();
        assert_eq!(
            v,
            json!({"processParam": {"scenario": "FullProcess"}, "List": [{"ImageData": {"image": "AAA"}}],
                   "SourceImage": {"Bytes": "BBB"}})
        );
        assert!(set_pointer(&mut v, "/List/5/x", json!(1)).is_err());
    }
}
