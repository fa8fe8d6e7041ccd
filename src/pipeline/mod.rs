//! Running one task: which sub-calls a service needs, in what order, and the merged result.
//!
//! `kyc_*`: document OCR first (its portrait is the compare reference), then liveness and face
//! compare concurrently. Everything routes through [`SubCallRouter`]; merging is in [`merge`].

pub mod merge;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::NaiveDate;
use serde_json::{json, Map, Value};

use crate::api::tasks::media_key;
use crate::images;
use crate::providers::{Image, IssueCode, SubCall, Verdict};
use crate::routing::{Fact, RouteContext, Routed, SubCallRouter};
use crate::tasks::store::{SharedStore, StoreError};
use crate::tasks::{ServiceKind, TaskId, TaskInput, TaskStatus};
use merge::{Issues, Outcome};

/// Crops a portrait from a document page when the OCR provider returned none (uses the local
/// face detector). Blocking: called from `spawn_blocking`.
pub trait PortraitCropper: Send + Sync + 'static {
    fn crop(&self, page: &Image) -> Option<Bytes>;
}

/// A finished task: its final status and Progeny `result` object.
#[derive(Debug)]
pub struct Finished {
    pub status: TaskStatus,
    pub result: Value,
}

/// Why a task could not be run at all (as opposed to a failed check, which is a result).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Runs tasks. Shared by every worker of an instance.
pub struct Pipeline {
    router: Arc<dyn SubCallRouter>,
    store: SharedStore,
    cropper: Option<Arc<dyn PortraitCropper>>,
}

fn image(input: &TaskInput, field: &str) -> Option<Image> {
    let bytes = input.images.get(field)?.clone();
    let mime = images::sniff(&bytes).unwrap_or("application/octet-stream");
    Some(Image { bytes, mime })
}

fn random_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

impl Pipeline {
    pub fn new(router: Arc<dyn SubCallRouter>, store: SharedStore, cropper: Option<Arc<dyn PortraitCropper>>) -> Self {
        Self { router, store, cropper }
    }

    /// The portrait cropper in use (the local provider's face detector), if any.
    pub fn cropper(&self) -> Option<Arc<dyn PortraitCropper>> {
        self.cropper.clone()
    }

    /// Runs `input` to its final result. A missing input image (should not happen: the API
    /// checked it) is a FAILURE, not a panic.
    pub async fn run(&self, id: TaskId, input: &TaskInput, today: NaiveDate) -> Result<Finished, PipelineError> {
        use tracing::Instrument;
        let span = tracing::info_span!("task", task = %id, service = %input.service);
        // Same trace as the POST that created the task, whichever instance runs it.
        crate::telemetry::propagation::set_parent(&span, input.trace_context.as_deref());
        // What routing policies may know: the task id (sticky splits), service and owner (rules).
        let ctx = RouteContext::new(id.to_string())
            .with(Fact::Service, input.service.as_str())
            .with(Fact::Owner, input.owner.as_str());
        async move { self.dispatch(input, &ctx, today).await }.instrument(span).await
    }

    async fn dispatch(&self, input: &TaskInput, ctx: &RouteContext, today: NaiveDate) -> Result<Finished, PipelineError> {
        match input.service {
            ServiceKind::FaceLiveness => Ok(self.face_liveness(input, ctx).await),
            ServiceKind::RegisterFace => self.register_face(input, ctx).await,
            ServiceKind::AuthenticateFace => self.authenticate_face(input, ctx).await,
            ServiceKind::OcrPassport => self.document(input, ctx, &["passport_image"], None, today).await,
            ServiceKind::OcrCard => self.document(input, ctx, &["front_id", "back_id"], None, today).await,
            ServiceKind::KycPassport => {
                self.document(input, ctx, &["passport_image"], Some("selfie_image"), today).await
            }
            ServiceKind::KycCard => self.document(input, ctx, &["front_id", "back_id"], Some("selfie_image"), today).await,
        }
    }

    async fn liveness(&self, img: Image, ctx: &RouteContext) -> Routed {
        self.router.route_with(SubCall::Liveness { image: img }, ctx).await
    }

    async fn face_liveness(&self, input: &TaskInput, ctx: &RouteContext) -> Finished {
        let Some(img) = image(input, "image") else { return missing_input("image") };
        let routed = self.liveness(img, ctx).await;
        let mut issues = Issues::default();
        let (section, _) = merge::liveness_section(&routed, &mut issues);
        let failed = matches!(merge::liveness_of(&routed), Outcome::Failed(_));
        let mut data = Map::new();
        data.insert("liveness".into(), section);
        finish(data, issues, input.extend_data, &[routed], failed)
    }

    async fn register_face(&self, input: &TaskInput, ctx: &RouteContext) -> Result<Finished, PipelineError> {
        let Some(img) = image(input, "image") else { return Ok(missing_input("image")) };
        let bytes = img.bytes.clone();
        let routed = self.liveness(img, ctx).await;
        let mut issues = Issues::default();
        let (section, live) = merge::liveness_section(&routed, &mut issues);
        let failed = matches!(merge::liveness_of(&routed), Outcome::Failed(_));
        let mut data = Map::new();
        // Only a live face is registered: a spoof must not become a reference.
        let uuid = if live {
            let uuid = uuid::Uuid::new_v4().hyphenated().to_string();
            self.store.put_face(&input.owner, &uuid, bytes).await?;
            Some(uuid)
        } else {
            None
        };
        data.insert("uuid".into(), json!(uuid));
        data.insert("liveness".into(), section);
        Ok(finish(data, issues, input.extend_data, &[routed], failed))
    }

    async fn authenticate_face(&self, input: &TaskInput, ctx: &RouteContext) -> Result<Finished, PipelineError> {
        let Some(img) = image(input, "image") else { return Ok(missing_input("image")) };
        let uuid = input.fields.get("uuid").cloned().unwrap_or_default();
        let mut issues = Issues::default();
        let mut data = Map::new();
        let Some(reference) = self.store.get_face(&input.owner, &uuid).await? else {
            issues.add("authentication", IssueCode::FaceNotRegistered.as_str(), IssueCode::FaceNotRegistered.default_message());
            data.insert("authentication".into(), json!({ "result": false }));
            return Ok(finish(data, issues, input.extend_data, &[], false));
        };
        let reference = Image { mime: images::sniff(&reference).unwrap_or("image/jpeg"), bytes: reference };
        let (live, cmp) = tokio::join!(
            self.liveness(img.clone(), ctx),
            self.router.route_with(SubCall::FaceCompare { probe: img, reference }, ctx)
        );
        let (lsec, _) = merge::liveness_section(&live, &mut issues);
        let auth = match merge::compare_of(&cmp) {
            Outcome::Answer(c) => merge::authentication_section(c),
            _ => merge::compare_section(&cmp, "authentication", &mut issues).0,
        };
        let failed = matches!(merge::compare_of(&cmp), Outcome::Failed(_))
            || matches!(merge::liveness_of(&live), Outcome::Failed(_));
        data.insert("authentication".into(), auth);
        data.insert("liveness".into(), lsec);
        Ok(finish(data, issues, input.extend_data, &[live, cmp], failed))
    }

    /// `ocr_*` (no selfie) and `kyc_*` (selfie: liveness + compare against the portrait).
    async fn document(
        &self,
        input: &TaskInput,
        ctx: &RouteContext,
        page_fields: &[&str],
        selfie_field: Option<&str>,
        today: NaiveDate,
    ) -> Result<Finished, PipelineError> {
        let mut pages = Vec::new();
        for f in page_fields {
            match image(input, f) {
                Some(p) => pages.push(p),
                None => return Ok(missing_input(f)),
            }
        }
        let first_page = pages[0].clone();
        let ocr = self.router.route_with(SubCall::DocumentOcr { pages }, ctx).await;
        let mut issues = Issues::default();
        let mut data = Map::new();
        let mut routed = vec![];

        let (fields, mut portrait) = match ocr.answer.as_ref().map(|a| &a.verdict) {
            Some(Verdict::Ocr(o)) => (Some(o.fields.clone()), o.portrait.clone()),
            Some(Verdict::Rejected(r)) => {
                issues.add_rejection("document", r);
                (None, None)
            }
            _ => {
                issues.add("document", IssueCode::ProviderFailed.as_str(), IssueCode::ProviderFailed.default_message());
                (None, None)
            }
        };
        let ocr_failed = ocr.answer.is_none();
        if portrait.is_none() {
            if let Some(cropper) = self.cropper.clone() {
                let page = first_page.clone();
                portrait = tokio::task::spawn_blocking(move || cropper.crop(&page)).await.ok().flatten();
            }
        }
        let mut stored_portrait = None;
        if let Some(p) = &portrait {
            let rel = format!("images/services/{}/{}.jpg", input.service, random_token());
            self.store.put_media(&media_key(&input.owner, &rel), p.clone()).await?;
            let base = input.base_url.clone().unwrap_or_default();
            let url = format!("{}/media/{}", base.trim_end_matches('/'), rel);
            stored_portrait = Some((rel, url));
        }
        let doc_value = match &fields {
            Some(f) => {
                if f.valid == Some(false) {
                    issues.add("document", IssueCode::MrzChecksumFailed.as_str(), IssueCode::MrzChecksumFailed.default_message());
                }
                if !f.disagreements.is_empty() {
                    let msg = format!("Document providers disagree on: {}", f.disagreements.join(", "));
                    issues.add("document", IssueCode::FieldDisagreement.as_str(), &msg);
                }
                merge::document_section(f, stored_portrait.as_ref().map(|(a, b)| (a.as_str(), b.as_str())), today)
            }
            None => json!(null),
        };
        data.insert("document".into(), doc_value);
        routed.push(ocr);

        let mut failed = ocr_failed;
        if let Some(selfie_field) = selfie_field {
            let Some(selfie) = image(input, selfie_field) else { return Ok(missing_input(selfie_field)) };
            // Rules on nationality / issuing state apply to the selfie checks.
            let mut ctx = ctx.clone();
            if let Some(f) = &fields {
                for (fact, v) in [(Fact::Nationality, &f.nationality), (Fact::IssuingState, &f.issuing_state)] {
                    if let Some(v) = v {
                        ctx.set(fact, v.as_str());
                    }
                }
            }
            let ctx = &ctx;
            let compare_fut = async {
                match portrait.clone() {
                    Some(p) => {
                        let reference = Image { mime: images::sniff(&p).unwrap_or("image/jpeg"), bytes: p };
                        Some(self.router.route_with(SubCall::FaceCompare { probe: selfie.clone(), reference }, ctx).await)
                    }
                    None => None,
                }
            };
            let (live, cmp) = tokio::join!(self.liveness(selfie.clone(), ctx), compare_fut);
            let (lsec, is_live) = merge::liveness_section(&live, &mut issues);
            failed |= matches!(merge::liveness_of(&live), Outcome::Failed(_));
            let mut details = Map::new();
            details.insert("liveness".into(), lsec);
            let is_match = match &cmp {
                Some(c) => {
                    let (csec, m) = merge::compare_section(c, "compare", &mut issues);
                    failed |= matches!(merge::compare_of(c), Outcome::Failed(_));
                    details.insert("compare".into(), csec);
                    m
                }
                None => {
                    issues.add("compare", IssueCode::PortraitNotFound.as_str(), IssueCode::PortraitNotFound.default_message());
                    details.insert("compare".into(), json!({ "result": false, "error_code": IssueCode::PortraitNotFound.as_str() }));
                    false
                }
            };
            data.insert("compare".into(), json!(is_match));
            data.insert("liveness".into(), json!(is_live));
            data.insert("details".into(), Value::Object(details));
            routed.push(live);
            if let Some(c) = cmp {
                routed.push(c);
            }
        }
        Ok(finish(data, issues, input.extend_data, &routed, failed))
    }
}

/// The final `result`: status 400 when the input could not be processed, per-provider attempts
/// under `providers`, raw vendor payloads under `extended` when asked.
fn finish(mut data: Map<String, Value>, issues: Issues, extend: bool, routed: &[Routed], failed: bool) -> Finished {
    let status_code = if failed {
        503
    } else if !issues.is_empty() {
        400
    } else {
        200
    };
    if !issues.is_empty() {
        data.insert("issues".into(), issues.into_value());
    }
    let mut providers = BTreeMap::<&str, Vec<Value>>::new();
    let mut extended = BTreeMap::<&str, Map<String, Value>>::new();
    for r in routed {
        let list = providers.entry(r.kind.as_str()).or_default();
        list.extend(r.attempts.iter().map(|a| json!(a)));
        if extend {
            if let Some(a) = &r.answer {
                extended
                    .entry(r.kind.as_str())
                    .or_default()
                    .insert(a.provider.clone(), a.raw.clone().unwrap_or(Value::Null));
            }
        }
    }
    data.insert("providers".into(), json!(providers));
    if extend {
        data.insert("extended".into(), json!(extended));
    }
    Finished {
        status: if failed { TaskStatus::Failure } else { TaskStatus::Success },
        result: json!({ "status": status_code, "data": data }),
    }
}

fn missing_input(field: &str) -> Finished {
    Finished {
        status: TaskStatus::Failure,
        result: json!({ "status": 500, "data": { "error": format!("task input {field} is missing") } }),
    }
}
