//! Thin wrapper over a tract runnable: load once, run from `&self` on NCHW f32 inputs.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::konst::Const;

use crate::error::VisionError;

/// Every output of a run: shape and flattened values.
pub(crate) type Outputs = Vec<(Vec<usize>, Vec<f32>)>;

/// One optimised ONNX graph with a fixed NCHW input shape.
pub(crate) struct Net {
    plan: Arc<TypedRunnableModel>,
    name: &'static str,
    shape: [usize; 4],
}

impl Net {
    /// Loads `path`, pins its single input to `shape` and, when `relax_outputs` is set, drops the output shapes
    /// declared in the file (YuNet declares them for 640x640 only).
    pub(crate) fn load(
        path: &Path,
        name: &'static str,
        shape: [usize; 4],
        relax_outputs: bool,
    ) -> Result<Self, VisionError> {
        let load_err = |e: TractError| VisionError::Load { path: path.to_path_buf(), source: e.into() };
        let mut model = tract_onnx::onnx().model_for_path(path).map_err(load_err)?;
        model.set_input_fact(0, f32::fact(shape).into()).map_err(load_err)?;
        if relax_outputs {
            // Forget every shape recorded in the file (value_info too) so analysis starts from the new input.
            let input_nodes: Vec<usize> =
                model.input_outlets().map_err(load_err)?.iter().map(|o| o.node).collect();
            for node in 0..model.nodes.len() {
                if input_nodes.contains(&node) {
                    continue;
                }
                for slot in 0..model.nodes[node].outputs.len() {
                    model.set_outlet_fact(OutletId::new(node, slot), InferenceFact::default()).map_err(load_err)?;
                }
            }
        }
        let plan = model
            .into_optimized()
            .and_then(natural_constants)
            .and_then(|m| m.into_runnable())
            .map_err(load_err)?;
        Ok(Self { plan, name, shape })
    }

    /// Input shape the graph was pinned to.
    pub(crate) fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// Runs the graph on `data` (length = product of the input shape) and returns every output as a flat vector
    /// with its shape.
    pub(crate) fn run(&self, data: Vec<f32>) -> Result<Outputs, VisionError> {
        let infer_err = |e: TractError| VisionError::Inference { model: self.name, source: e.into() };
        let input = Tensor::from_shape(&self.shape, &data).map_err(infer_err)?;
        let outputs = self.plan.run(tvec!(input.into())).map_err(infer_err)?;
        outputs
            .iter()
            .map(|t| {
                let view = t.to_plain_array_view::<f32>().map_err(infer_err)?;
                Ok((view.shape().to_vec(), view.iter().copied().collect()))
            })
            .collect()
    }

    /// Network name used in errors.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }
}

/// Gives every constant of the optimised graph the natural strides of its shape.
///
/// tract's optimiser leaves some constants (the per-channel PReLU slopes of fr_feature and
/// MiniFASNet, `[1, C, 1, 1]`) with the strides of an inserted unit axis; its by-scalar binary ops
/// then take their generic per-element path instead of the SIMD kernel. Only strides of unit
/// axes differ, so the values and their order are unchanged and so are the outputs; the layout
/// is what the fast path checks for.
fn natural_constants(mut model: TypedModel) -> TractResult<TypedModel> {
    for node in &mut model.nodes {
        let Some(konst) = node.op_as::<Const>() else { continue };
        let t = konst.val();
        let natural = Tensor::natural_strides(t.shape());
        let unit_axes_only = t.shape().iter().zip(t.strides().iter().zip(&natural)).all(|(&d, (s, n))| d == 1 || s == n);
        if t.strides() == &*natural || !unit_axes_only || konst.exotic_fact().is_some() {
            continue;
        }
        let shape = t.shape().to_vec();
        // Reshaping to another shape and back recomputes the strides (same-shape reshapes keep them).
        let relaid = (**t).clone().into_shape(&[t.len()])?.into_shape(&shape)?;
        node.op = Box::new(Const::new(Arc::new(relaid))?);
    }
    Ok(model)
}

/// Softmax over a logit vector.
pub(crate) fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|v| v / sum).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn softmax_sums_to_one_and_orders() {
        let p = super::softmax(&[1.0, 3.0, 0.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[1] > p[0] && p[0] > p[2]);
    }
}
