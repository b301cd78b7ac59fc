"""No-op training, as bench/swarms/noop_fedavg/worker.py: the model plus one, sent back whole."""

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    arrays = msg.content["arrays"]
    trained = ArrayRecord([array.numpy() + 1.0 for array in arrays.values()])
    content = RecordDict({"arrays": trained, "metrics": MetricRecord({"num-examples": 1})})
    return Message(content=content, reply_to=msg)
