"""A SavedModel as TF Serving loads it (TF1 session loader) and its warmup requests."""

import tensorflow as tf

from export.warmup import WARMUP_DIR, WARMUP_FILE


class SessionLoaded:
    """A SavedModel loaded as TF Serving and `saved_model_cli run` load it: in a fresh graph
    with `tf.compat.v1.saved_model.loader.load`, signatures run by their tensor names."""

    def __init__(self, path):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(path))
            self.uninitialized = self.session.run(tf.compat.v1.report_uninitialized_variables())
        # `__saved_model_init_op` is an entry of signature_def but not a signature.
        self.signatures = {k: v for k, v in meta.signature_def.items() if not k.startswith("__")}

    def run(self, signature: str, **inputs) -> dict:
        sig = self.signatures[signature]
        assert sorted(inputs) == sorted(sig.inputs), (signature, list(sig.inputs))
        fetches = {k: v.name for k, v in sig.outputs.items()}
        return self.session.run(fetches, {sig.inputs[k].name: v for k, v in inputs.items()})

    def close(self):
        self.session.close()


def warmup_requests(path):
    from tensorflow_serving.apis import prediction_log_pb2  # the serving extra

    records = tf.data.TFRecordDataset(str(path / WARMUP_DIR / WARMUP_FILE))
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy()).predict_log.request
            for r in records]
