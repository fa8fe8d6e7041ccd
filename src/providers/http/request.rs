//! Builds one vendor HTTP request (a step, a poll or the endpoint's own) from its validated
//! template, the sub-call's images and the values captured so far.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, Url};
use serde_json::Value;

use super::template::Template;
use super::validate::{RequestTpl, ResolvedAuth, ValidatedHttpSpec};
use super::wire::{image_for, Builtins, Secret};
use crate::providers::spec::{BodySpec, ImageEncoding, JsonImage, MultipartImage};
use crate::providers::{ProviderError, SubCall};

fn extension(mime: &str) -> &'static str {
    match mime {
        "image/png" => "png",
        _ => "jpg",
    }
}

/// The names a request template can see: vars, captures of earlier steps, per-request built-ins.
pub(crate) struct Scope<'a> {
    pub vars: &'a BTreeMap<String, String>,
    pub captures: &'a BTreeMap<String, String>,
    pub builtins: &'a Builtins,
}

impl Scope<'_> {
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        self.captures.get(name).cloned().or_else(|| self.vars.get(name).cloned()).or_else(|| self.builtins.get(name))
    }

    pub(crate) fn render(&self, t: &Template, at: &str) -> Result<String, ProviderError> {
        t.render(&|n| self.get(n)).map_err(|n| ProviderError::Config(format!("{at}: `${{{n}}}` has no value")))
    }

    fn render_str(&self, s: &str, at: &str) -> Result<String, ProviderError> {
        let t = Template::parse(s).map_err(ProviderError::Config)?;
        self.render(&t, at)
    }

    /// Renders every string of a TOML tree into JSON.
    fn render_tree(&self, v: &toml::Value, at: &str) -> Result<Value, ProviderError> {
        Ok(match v {
            toml::Value::String(s) => Value::String(self.render_str(s, at)?),
            toml::Value::Array(a) => Value::Array(a.iter().map(|x| self.render_tree(x, at)).collect::<Result<_, _>>()?),
            toml::Value::Table(t) => Value::Object(
                t.iter().map(|(k, x)| Ok((k.clone(), self.render_tree(x, at)?))).collect::<Result<_, ProviderError>>()?,
            ),
            other => serde_json::to_value(other).map_err(|e| ProviderError::Config(format!("{at}: {e}")))?,
        })
    }
}

/// Percent-encodes a value substituted into a URL path (everything but RFC 3986 unreserved).
fn encode_path_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL of a request: `base` + rendered path + rendered query (+ auth query parameters).
pub(crate) fn url(spec: &ValidatedHttpSpec, tpl: &RequestTpl, scope: &Scope<'_>) -> Result<Url, ProviderError> {
    let path = tpl
        .path
        .render(&|n| scope.get(n).map(|v| encode_path_value(&v)))
        .map_err(|n| ProviderError::Config(format!("{}.path: `${{{n}}}` has no value", tpl.label)))?;
    let mut url = spec.base_url.clone();
    // Join keeping the base URL's own path prefix (`http://host/prefix` + `/api/x`).
    let joined = format!("{}{}", spec.base_url.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    let mut pairs = Vec::new();
    for (k, t) in &tpl.query {
        pairs.push((k.clone(), scope.render(t, &tpl.label)?));
    }
    if !pairs.is_empty() {
        url.query_pairs_mut().extend_pairs(pairs);
    }
    Ok(url)
}

/// Builds the request (not sent) to `url`. Static credentials go only where the adapter put
/// them; signing and tokens are applied by the caller on the built request.
pub(crate) fn build(
    client: &reqwest::Client,
    spec: &ValidatedHttpSpec,
    tpl: &RequestTpl,
    method: Method,
    mut url: Url,
    call: Option<&SubCall>,
    scope: &Scope<'_>,
) -> Result<reqwest::Request, ProviderError> {
    if let ResolvedAuth::Query(params) = &spec.auth {
        url.query_pairs_mut().extend_pairs(params.iter().map(|(k, v)| (k.as_str(), v.expose())));
    }
    let mut headers = HeaderMap::new();
    for (name, t) in &tpl.headers {
        let v = scope.render(t, &tpl.label)?;
        let value = HeaderValue::from_str(&v)
            .map_err(|_| ProviderError::Config(format!("{}: header {name} is not a valid value", tpl.label)))?;
        headers.insert(name.clone(), value);
    }
    let mut req = client.request(method, url).headers(headers);
    match &spec.auth {
        ResolvedAuth::Header(name, value) => req = req.header(name.clone(), value.clone()),
        ResolvedAuth::Basic(user, pass) => req = req.basic_auth(user.expose(), Some(pass.expose())),
        _ => {}
    }
    let body = Body { tpl, call, scope, auth_fields: auth_fields(spec) };
    let req = match &tpl.body {
        BodySpec::Multipart { images, fields } => {
            let parts = body.multipart_parts(images, fields)?;
            if spec.signs_body {
                // Signed: the exact bytes must exist before sending.
                let (content_type, bytes) = multipart_bytes(&parts);
                req.header(CONTENT_TYPE, content_type).body(bytes)
            } else {
                req.multipart(multipart_form(parts)?)
            }
        }
        BodySpec::Json { images, fields } => {
            let bytes = Bytes::from(body.json(images, fields)?);
            // An adapter's own Content-Type wins.
            let req = if tpl.headers.iter().any(|(n, _)| *n == CONTENT_TYPE) {
                req
            } else {
                req.header(CONTENT_TYPE, "application/json")
            };
            if spec.resends_body {
                req.body(bytes)
            } else {
                req.body(reqwest::Body::wrap(OnceBody(Some(bytes))))
            }
        }
        BodySpec::Raw { source, content_type } => {
            let image = image_for(call, *source)?
                .ok_or_else(|| ProviderError::Config(format!("{}: no {source:?} image in this call", tpl.label)))?;
            let ct = content_type.as_deref().unwrap_or("application/octet-stream");
            req.header(CONTENT_TYPE, ct).body(image.bytes.clone())
        }
        BodySpec::None => req,
    };
    req.build().map_err(|e| ProviderError::Config(format!("{}: {}", tpl.label, e.without_url())))
}

/// A request body sent once, released as soon as it is written. reqwest keeps a clone of a
/// resendable (`Bytes`) body until the answer arrives, to resend it on a 307/308 even when
/// redirects are off: a JSON body carrying base64 images (160–400 KB) would stay in memory for
/// as long as the vendor takes to answer, for every call in flight. Its exact length is known,
/// so it goes out with `Content-Length`, not chunked.
struct OnceBody(Option<Bytes>);

impl hyper::body::Body for OnceBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.take().map(|b| Ok(hyper::body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

/// Credentials the adapter sends as body fields (`auth.type = "fields"`).
fn auth_fields(spec: &ValidatedHttpSpec) -> &[(String, Secret)] {
    match &spec.auth {
        ResolvedAuth::Fields(f) => f,
        _ => &[],
    }
}

/// One part of a multipart body, in the order the vendor will see it.
#[derive(Debug)]
struct FormPart<'a> {
    name: String,
    /// Set for file parts (images sent as files); text parts have none.
    file: Option<FilePart<'a>>,
    bytes: Bytes,
}

/// The file name and content type of a file part.
#[derive(Debug)]
struct FilePart<'a> {
    filename: String,
    mime: &'a str,
}

impl FormPart<'_> {
    fn text(name: &str, value: impl Into<Bytes>) -> Self {
        Self { name: name.to_string(), file: None, bytes: value.into() }
    }
}

/// What a body is rendered from: the template, the sub-call's images, the values in scope and
/// the credentials sent as fields.
struct Body<'a> {
    tpl: &'a RequestTpl,
    call: Option<&'a SubCall>,
    scope: &'a Scope<'a>,
    auth_fields: &'a [(String, Secret)],
}

impl<'a> Body<'a> {
    /// Multipart parts: credentials, then fields, then images.
    fn multipart_parts(
        &self,
        images: &'a [MultipartImage],
        fields: &BTreeMap<String, String>,
    ) -> Result<Vec<FormPart<'a>>, ProviderError> {
        let b64 = base64_simd::STANDARD;
        let mut parts = Vec::new();
        for (k, v) in self.auth_fields {
            parts.push(FormPart::text(k, v.expose().to_string()));
        }
        for (k, v) in fields {
            parts.push(FormPart::text(k, self.scope.render_str(v, &self.tpl.label)?));
        }
        for slot in images {
            let Some(image) = image_for(self.call, slot.source)? else { continue };
            parts.push(match slot.encoding {
                ImageEncoding::Base64 => FormPart::text(&slot.field, b64.encode_to_string(&image.bytes)),
                ImageEncoding::File => FormPart {
                    name: slot.field.clone(),
                    file: Some(FilePart {
                        filename: slot
                            .filename
                            .clone()
                            .unwrap_or_else(|| format!("{}.{}", slot.field, extension(image.mime))),
                        mime: image.mime,
                    }),
                    bytes: image.bytes.clone(),
                },
            });
        }
        Ok(parts)
    }

    /// The JSON body: fields rendered, credentials added, images written at their pointers.
    /// Serialized here (not `.json()`) so the bytes are buffered for signing.
    ///
    /// An image goes into the tree as a placeholder string and its base64 is written straight
    /// into the serialized bytes ([`splice_images`]): as a `Value` string, serde_json would scan
    /// every byte of it for escapes (a passport page is a ~160 KB string), after it was built
    /// once as a `String` and copied into the tree.
    fn json(&self, images: &'a [JsonImage], fields: &toml::Table) -> Result<Vec<u8>, ProviderError> {
        let label = &self.tpl.label;
        let mut body = self.scope.render_tree(&toml::Value::Table(fields.clone()), label)?;
        if let Value::Object(map) = &mut body {
            for (k, v) in self.auth_fields {
                map.insert(k.clone(), Value::String(v.expose().to_string()));
            }
        }
        // A fresh nonce per body: no vendor-supplied or rendered text can equal a placeholder.
        let nonce = crate::ids::new_v4().simple();
        let mut placed: Vec<Placed<'a>> = Vec::new();
        for slot in images {
            let Some(image) = image_for(self.call, slot.source)? else { continue };
            let placeholder = format!("kycgate-image-{nonce}-{}", placed.len());
            set_pointer(&mut body, &slot.pointer, Value::String(placeholder.clone()))?;
            if let Some(mp) = &slot.mime_pointer {
                set_pointer(&mut body, mp, Value::String(image.mime.to_string()))?;
            }
            for (p, v) in &slot.also {
                set_pointer(&mut body, p, self.scope.render_tree(v, label)?)?;
            }
            placed.push(Placed { placeholder, bytes: &image.bytes });
        }
        let json = serde_json::to_vec(&body).map_err(|e| ProviderError::Config(format!("body: {e}")))?;
        Ok(splice_images(json, &placed))
    }
}

/// An image's placeholder in a serialized JSON body, and the bytes whose base64 replaces it.
struct Placed<'a> {
    /// Letters, digits and `-` only, so serde_json writes it unescaped.
    placeholder: String,
    bytes: &'a Bytes,
}

/// Replaces each placeholder string in `json` by its image's base64 (standard alphabet, padded:
/// it needs no JSON escaping, so the surrounding quotes stay). A placeholder a later pointer
/// overwrote is absent and skipped, as the overwritten value would have been.
fn splice_images(json: Vec<u8>, placed: &[Placed<'_>]) -> Vec<u8> {
    let b64 = base64_simd::STANDARD;
    // Found with its quotes, so `…-1` never matches inside `…-10`; `i` is where its text starts.
    let find = |p: &Placed<'_>| memchr::memmem::find(&json, format!("\"{}\"", p.placeholder).as_bytes()).map(|i| i + 1);
    let mut at: Vec<(usize, &Placed<'_>)> = placed.iter().filter_map(|p| find(p).map(|i| (i, p))).collect();
    if at.is_empty() {
        return json;
    }
    at.sort_by_key(|(i, _)| *i);
    let extra: usize = at.iter().map(|(_, p)| b64.encoded_length(p.bytes.len())).sum();
    let mut out = Vec::with_capacity(json.len() + extra);
    let mut from = 0;
    for (i, p) in at {
        out.extend_from_slice(&json[from..i]);
        b64.encode_append(p.bytes, &mut out);
        from = i + p.placeholder.len();
    }
    out.extend_from_slice(&json[from..]);
    out
}

/// A streamed `multipart/form-data` body (unsigned adapters).
fn multipart_form(parts: Vec<FormPart<'_>>) -> Result<Form, ProviderError> {
    let mut form = Form::new();
    for part in parts {
        form = match part.file {
            None => form.text(part.name, String::from_utf8_lossy(&part.bytes).into_owned()),
            Some(file) => {
                let len = part.bytes.len() as u64;
                let body = Part::stream_with_length(reqwest::Body::from(part.bytes), len)
                    .file_name(file.filename)
                    .mime_str(file.mime)
                    .map_err(|e| ProviderError::Config(format!("image content type: {e}")))?;
                form.part(part.name, body)
            }
        };
    }
    Ok(form)
}

/// A `multipart/form-data` body built in memory: (content type with boundary, bytes).
fn multipart_bytes(parts: &[FormPart<'_>]) -> (String, Vec<u8>) {
    let boundary = format!("kycgate-{}", crate::ids::new_v4().simple());
    let quote = |s: &str| s.replace('"', "%22").replace(['\r', '\n'], " ");
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"", quote(&part.name)).as_bytes(),
        );
        if let Some(file) = &part.file {
            body.extend_from_slice(format!("; filename=\"{}\"\r\nContent-Type: {}", quote(&file.filename), file.mime).as_bytes());
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(&part.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
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
    use base64::Engine as _;
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

    #[test]
    fn spliced_images_equal_the_base64_strings_serde_json_would_write() {
        let (a, b) = (Bytes::from(vec![0xffu8; 1000]), Bytes::from_static(b"\x00\x01 \"quoted\" \\ png"));
        let placed = [Placed { placeholder: "kycgate-image-n-0".into(), bytes: &a }, Placed {
            placeholder: "kycgate-image-n-1".into(),
            bytes: &b,
        }];
        let tree = json!({"z": [{"img": "kycgate-image-n-1"}], "a": {"img": "kycgate-image-n-0"}, "x": "kycgate-image-n"});
        let spliced = splice_images(serde_json::to_vec(&tree).unwrap(), &placed);
        let b64 = base64::engine::general_purpose::STANDARD;
        let expected = json!({"z": [{"img": b64.encode(&b)}], "a": {"img": b64.encode(&a)}, "x": "kycgate-image-n"});
        assert_eq!(spliced, serde_json::to_vec(&expected).unwrap());
        // Nothing placed (or every placeholder overwritten): the body as serialized.
        assert_eq!(splice_images(b"{}".to_vec(), &placed), b"{}");
    }
}
