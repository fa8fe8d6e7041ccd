//! A small ONNX graph builder over tract-onnx's generated protobuf types, shared by the
//! converters. Names are assigned from one counter in insertion order, so the same network always
//! encodes to the same bytes.

use tract_onnx::pb;

/// ONNX IR version and default-domain opset every converter writes.
const IR_VERSION: i64 = 8;
const OPSET: i64 = 13;

/// Nodes and initialisers in insertion order.
#[derive(Default)]
pub(crate) struct Graph {
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
    counter: usize,
}

pub(crate) fn ints_attr(name: &str, ints: Vec<i64>) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints,
        ..Default::default()
    }
}

pub(crate) fn int_attr(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

/// A float tensor input or output with a static shape.
pub(crate) fn value_info(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value as Dim, Dimension};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(Dim::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Graph {
    pub(crate) fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{}", self.counter)
    }

    pub(crate) fn init_f32(&mut self, dims: Vec<i64>, data: &[f32]) -> String {
        let name = self.fresh("w");
        self.inits.push(pb::TensorProto {
            name: name.clone(),
            dims,
            data_type: pb::tensor_proto::DataType::Float as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    pub(crate) fn init_i64(&mut self, data: &[i64]) -> String {
        let name = self.fresh("w");
        self.inits.push(pb::TensorProto {
            name: name.clone(),
            dims: vec![data.len() as i64],
            data_type: pb::tensor_proto::DataType::Int64 as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// Appends a node; its output is `output` or a fresh name.
    pub(crate) fn node(
        &mut self,
        op: &str,
        inputs: Vec<String>,
        attrs: Vec<pb::AttributeProto>,
        output: Option<&str>,
    ) -> String {
        let out = output.map(str::to_owned).unwrap_or_else(|| self.fresh("t"));
        let name = format!("{op}_{}", self.nodes.len());
        self.nodes.push(pb::NodeProto {
            input: inputs,
            output: vec![out.clone()],
            name,
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    /// The finished model: one graph, ONNX IR 8, opset 13, `producer` naming the converter
    /// version (bumped whenever the produced bytes change).
    pub(crate) fn into_model(
        self,
        name: &str,
        doc: &str,
        producer: &str,
        input: pb::ValueInfoProto,
        output: pb::ValueInfoProto,
    ) -> pb::ModelProto {
        let graph = pb::GraphProto {
            node: self.nodes,
            name: name.into(),
            initializer: self.inits,
            doc_string: doc.into(),
            input: vec![input],
            output: vec![output],
            ..Default::default()
        };
        pb::ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: producer.into(),
            graph: Some(graph),
            ..Default::default()
        }
    }
}
