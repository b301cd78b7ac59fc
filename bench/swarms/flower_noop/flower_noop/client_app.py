"""No-op training, as bench/swarms/noop_fedavg/worker.py: the model plus an offset of the node's
own, sent back whole."""

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    arrays = msg.content["arrays"]
    offset = 1.0 + context.node_id % 1000 / 1000
    trained = ArrayRecord([array.numpy() + offset for array in arrays.values()])
    content = RecordDict({"arrays": trained, "metrics": MetricRecord({"num-examples": 1})})
    return Message(content=content, reply_to=msg)
