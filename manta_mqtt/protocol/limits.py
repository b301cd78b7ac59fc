"""Every limit a peer of protocol v2 must respect, named once.

A node or coordinator written in another language needs these numbers as much as the topic
layout, so they live here, and docs/protocol.md (section *Limits*) states each one; a test
keeps the two in step. Naming convention, which that test relies on: a name ending in
``_BYTES`` or ``_SIZE`` is in bytes, one ending in ``_SECONDS`` in seconds, ``ID_PATTERN`` is a
regular expression, and every other name is a count. Rejection reasons are those of
:mod:`manta_mqtt.protocol.rejections`.
"""

from __future__ import annotations

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# --- message sizes ---------------------------------------------------------------------------

#: Largest msgpack message any receiver decodes: the MQTT maximum packet size. Enforced by
#: ``codec.decode``; a larger payload is refused and the message counted ``malformed``.
MAX_MESSAGE_BYTES = 268_435_455

#: Largest assignment payload a node accepts. Enforced by the node before decoding; a larger
#: one is dropped and counted ``oversized`` (the node never runs it).
MAX_ASSIGNMENT_BYTES = 1 * MiB

#: Largest result envelope the coordinator accepts. Enforced by the coordinator's intake before
#: decoding; a larger one is dropped and counted ``oversized`` (values this large belong in
#: uploads, referenced by ``{"blob", "size"}``).
MAX_ENVELOPE_BYTES = 64 * MiB

#: Most dimensions of a numpy array in a value (codec extension type 1). Enforced by ``codec.encode``
#: and ``codec.decode``; a message holding a deeper array is refused and counted ``malformed``.
MAX_ARRAY_DIMENSIONS = 32

#: Largest blob (code bundle, global, uploaded value) a receiver reassembles. Enforced by the
#: node's blob fetcher and the coordinator's upload receiver when a transfer starts; each chunk
#: of a larger blob is dropped and counted ``bad_chunk``, so the blob never arrives.
MAX_BLOB_BYTES = 1 * GiB

# --- chunks ------------------------------------------------------------------------------------

#: Smallest chunk size a ``Chunk`` or ``UploadGrant`` may declare. Enforced by every parser; a
#: message declaring less is dropped and counted ``malformed``.
MIN_CHUNK_SIZE = 1 * KiB

#: Chunk size publishers use unless configured otherwise; it shrinks below the broker's MQTT 5
#: ``MaximumPacketSize`` (never below ``MIN_CHUNK_SIZE``). A default, not a bound on receivers.
DEFAULT_CHUNK_SIZE = 1 * MiB

#: Largest chunk index in a topic (nine digits). Enforced by the topic builders and parser; a
#: topic with a larger or longer index is dropped and counted ``malformed``.
MAX_CHUNK_INDEX = 999_999_999

#: Values larger than this travel as uploaded chunks referenced by ``{"blob", "size"}`` instead
#: of inline in the envelope. The node's default (``inline_limit`` in ``[broker]`` of its config);
#: the coordinator accepts either form.
DEFAULT_INLINE_LIMIT_BYTES = 256 * KiB

# --- flow control --------------------------------------------------------------------------------

#: Publishes one client keeps in flight at a time: QoS 1 ones not yet acknowledged, QoS 0 ones not
#: yet written to the socket. Enforced by the publisher itself (``MqttLink``): a further publish
#: waits; nothing is dropped.
PUBLISH_WINDOW = 16

#: Subscribe requests a client remembers until their SUBACK (to name the filters of a refusal),
#: and SUBACKs kept until a waiting caller takes them. Enforced by ``SubscriptionBook``; past it
#: the oldest is forgotten (a refusal of it is then counted and logged without its filters).
MAX_AWAITED_SUBACKS = 1000

#: Chunks of one blob a fetching node has asked for (``BlobRequest``) and not yet received.
#: Enforced by the node's blob fetcher: it asks for more as chunks arrive, so the broker queues
#: about this many chunks per blob toward a small device, and the coordinator serves at most this
#: many requested chunks per node and blob at a time (it drops the rest of a larger request,
#: counted ``overflow``).
FETCH_WINDOW = 8

#: Seconds a fetching node waits for any chunk of a blob it asked for before asking again for
#: those still missing (a request or chunk lost: chunks travel at QoS 0, a broker failed over).
#: Enforced by the node's blob fetcher.
FETCH_RETRY_SECONDS = 3

#: Chunks the coordinator has queued to publish for nodes' requests (one entry per blob and index,
#: however many nodes asked). Enforced by the coordinator's blob server; a request past it is
#: dropped, counted ``overflow``, and the node asks again after ``FETCH_RETRY_SECONDS``.
MAX_QUEUED_BLOB_CHUNKS = 4096

#: Seconds between two statuses a node sends to answer ``discover`` requests: more requests in that
#: time get one answer, at its end. Enforced by the node, so no publisher of requests can make a
#: fleet flood the broker.
DISCOVER_MIN_INTERVAL_SECONDS = 1

#: Seconds a node waits for an assignment's code and globals (or the assignment's own timeout,
#: if shorter). Enforced by the node; past it the task is reported failed
#: ("could not fetch blob(s)") without running.
BLOB_FETCH_TIMEOUT_SECONDS = 600

#: Bytes of upload chunks the coordinator has granted (``UploadGrant``) and not yet received, all
#: nodes together. Enforced by the coordinator's grant scheduler (``manta-mqtt run --upload-window``):
#: it grants more only as chunks arrive, so the broker never queues more than this toward it. Well
#: below the broker's per-client queue (Mosquitto's ``max_queued_bytes``, 512 MiB in broker_config/),
#: past which Mosquitto drops messages silently.
UPLOAD_WINDOW_BYTES = 32 * MiB

#: Seconds after which the coordinator grants again the chunks of a grant that did not arrive (a
#: grant or chunk lost, a node that reconnected). Enforced by the grant scheduler; a node may so
#: receive a grant twice and answer it twice (the receiver ignores duplicate chunks).
GRANT_RETRY_SECONDS = 30

#: Uploads one node may have open (incomplete) at the coordinator. Enforced by the coordinator's
#: upload receiver; a chunk starting one more is dropped and counted ``oversized``.
MAX_OPEN_UPLOADS_PER_NODE = 16

#: Bytes the coordinator holds in one node's incomplete uploads: the chunks that arrived (nothing is
#: allocated at a declared size) plus 4 KiB per open upload for its bookkeeping. Enforced by the
#: coordinator's upload receiver; the chunk that would pass it is dropped, counted ``oversized``, and
#: that upload discarded. At least ``MAX_BLOB_BYTES``, so any blob a node may upload fits.
MAX_NODE_UPLOAD_BYTES = 1 * GiB

#: Bytes the coordinator holds in all nodes' incomplete uploads together, counted the same way: what
#: protects the process when many nodes (or forged node ids) upload at once. Enforced like
#: ``MAX_NODE_UPLOAD_BYTES``.
MAX_TOTAL_UPLOAD_BYTES = 2 * GiB

#: Seconds without a new chunk after which the coordinator's upload receiver discards an
#: incomplete upload, uncounted; the envelope referring to it is not accepted without it.
UPLOAD_STALL_SECONDS = 600

#: Result envelopes the coordinator holds for a step that has not opened yet (e.g. queued by the
#: broker while it restarted), judged when the step opens. Past it they are dropped and counted
#: ``overflow``.
MAX_EARLY_RESULTS = 10_000

#: Bytes of result envelopes (as received) the coordinator holds for one node before judging them,
#: in each of two places: queued between its network and main threads (e.g. while an aggregator
#: runs), and kept until their step opens. Enforced by the coordinator's intake and its engine
#: (``manta-mqtt run --node-result-budget``); the envelope past it is dropped and counted
#: ``overflow``; other nodes' go on. Twice ``MAX_ENVELOPE_BYTES``, so a full-size one always fits.
MAX_NODE_RESULT_BYTES = 128 * MiB

#: Bytes of result envelopes held for all nodes together, in each of the same two places. Enforced
#: like ``MAX_NODE_RESULT_BYTES`` (``manta-mqtt run --result-budget``).
MAX_TOTAL_RESULT_BYTES = 1 * GiB

#: Assignments a node holds queued behind the running one. Enforced by the node's job book; one
#: more is dropped and counted ``overflow`` (never run); the running job is unaffected.
MAX_QUEUED_JOBS = 16

#: Ended swarms a node remembers, to refuse their late assignments. Past it the oldest is
#: forgotten; a late assignment of a swarm that old is then run (and its result refused late).
MAX_FINISHED_SWARMS = 1000

#: Delivered results a node keeps in its outbox to answer a repeated assignment without running
#: it again. Past it the oldest are deleted; a repeat of one of those runs the task again.
OUTBOX_KEEP_SENT = 200

#: Bytes of blobs a node keeps in its cache (``data_dir/cache``: code bundles, globals, its large
#: results). The node's default (``max_mib`` in ``[cache]`` of its config). Enforced by the node's
#: worker before each job fetches its blobs and after it: the least recently used blobs are
#: deleted (fetched again if needed); blobs still in use (the job's code and globals, the uploads
#: of results in its outbox, warm task processes' code) are kept even past it, with a warning.
DEFAULT_NODE_CACHE_BYTES = 2 * GiB

# --- fields ----------------------------------------------------------------------------------

#: Node ids, swarm ids and task aliases: one topic level, of characters every broker carries in
#: a topic (NATS refuses a topic with ``.``, RabbitMQ reads ``.`` as a level separator). Enforced
#: by every topic builder and parser and by message parsers; a message breaking it is dropped and
#: counted ``malformed``.
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"

#: Largest assignment ``timeout`` (it must also be > 0). Enforced by ``Assignment.parse``; an
#: assignment outside (0, 7 days] is dropped and counted ``malformed``.
MAX_TASK_TIMEOUT_SECONDS = 7 * 24 * 3600

# --- node health and logs ------------------------------------------------------------------

#: Characters of the ``last_error`` a node's status carries (its last warning or error). Enforced
#: by the node, which cuts the text, and by ``NodeStatus.parse``, which cuts a longer one.
MAX_STATUS_ERROR_LENGTH = 300

#: Largest ``NodeLog`` payload a reader decodes. Enforced by ``NodeLog.parse`` before decoding; a
#: larger one is dropped (``manta-mqtt logs`` shows nothing of it).
MAX_LOG_BYTES = 32 * KiB

#: Bytes (UTF-8) of a ``NodeLog``'s ``message``. Enforced by the node (it cuts the text) and by
#: ``NodeLog.parse``, which drops a message with a longer one.
MAX_LOG_MESSAGE_BYTES = 1 * KiB

#: Lines of a failed task's stderr or traceback a ``NodeLog`` carries in ``tail``: the last ones.
#: Enforced by the node, which drops the earlier lines.
LOG_TAIL_LINES = 40

#: Bytes (UTF-8) of a ``NodeLog``'s ``tail``. Enforced by the node (it keeps the last bytes) and
#: by ``NodeLog.parse``, which drops a message with a longer one.
MAX_LOG_TAIL_BYTES = 4 * KiB

# --- task channel (local, between a host and its task process) --------------------------------

#: Largest frame message a host reads from its task process. Enforced by ``Channel.recv``; a larger
#: one ends the host's service of that task, which is then reported failed (at the latest when its
#: timeout kills it). Messages are decoded by ``codec.decode``, so in effect ``MAX_MESSAGE_BYTES``
#: bounds them first; a frame's payload (a value) is bounded by ``MAX_MESSAGE_BYTES`` as well, as
#: no receiver could decode a larger value.
MAX_TASK_FRAME_BYTES = 2 * GiB
