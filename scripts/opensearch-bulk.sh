#!/usr/bin/env bash
# OpenSearch's indexing knobs, measured with the backend's own request
# shapes but without the API: 100,000 messages of ~200 bytes (the words of
# bench/benches/search.rs, folded) as `_bulk` bodies of 2,000 documents
# (`BULK_DOCUMENTS_MAX`) into an index with the backend's analyzers
# (`words` and its `words.trigrams` ngram subfield), a `_refresh` after
# every 20,000 (what the indexer's commit every 20 batches does), with
# each variant's replicas, translog durability, trigram subfield and
# number of bulk requests in flight. Prints messages/s per variant.
#
#   scripts/opensearch.sh start && scripts/opensearch-bulk.sh
#
# Environment: OPENSEARCH_URL (http://127.0.0.1:9200), BULK_MESSAGES
# (100000), BULK_DOCUMENTS (2000), BULK_PER_REFRESH (10 requests).
set -euo pipefail
URL=${OPENSEARCH_URL:-http://127.0.0.1:9200}
MESSAGES=${BULK_MESSAGES:-100000}
DOCUMENTS=${BULK_DOCUMENTS:-2000}
PER_REFRESH=${BULK_PER_REFRESH:-10}
INDEX=chat-bulk-bench
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"; curl -s -o /dev/null -XDELETE "$URL/$INDEX"' EXIT

python3 - "$WORK" "$MESSAGES" "$DOCUMENTS" "$INDEX" <<'PY'
import json, sys
work, messages, documents, index = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
words = ["hello", "meeting", "tomorrow", "budget", "deploy", "release", "coffee", "lunch",
         "review", "schedule", "project", "customer", "ticket", "urgent", "thanks", "weekend",
         "report", "design", "server", "latency", "creme", "brulee", "привет", "καλημερα", "東", "京"]
seed = 1
out = None
for i in range(messages):
    if i % documents == 0:
        if out:
            out.close()
        out = open(f"{work}/bulk{i // documents:05d}.ndjson", "w")
    text = []
    while len(" ".join(text)) < 200:
        seed = (seed * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        text.append(words[(seed >> 33) % len(words)])
    body = " ".join(text)
    out.write(json.dumps({"index": {"_index": index, "_id": f"1.{i % 100}.{i}", "routing": "1"}}) + "\n")
    out.write(json.dumps({"app": 1, "chat": i % 100, "number": i, "ordinal": i, "sent_at": 0,
                          "sender": "user1", "recipients": [], "to_all": True, "body": body,
                          "words": body}, ensure_ascii=False) + "\n")
out.close()
PY

settings() { # replicas durability trigrams
    python3 - "$@" <<'PY'
import json, sys
replicas, durability, trigrams = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
words = {"type": "text", "analyzer": "chat_words", "index_options": "positions", "norms": False}
if trigrams:
    words["fields"] = {"trigrams": {"type": "text", "analyzer": "chat_trigrams",
                                    "index_options": "docs", "norms": False}}
print(json.dumps({
    "settings": {
        "index.number_of_shards": 1, "index.number_of_replicas": replicas,
        "index.translog.durability": durability, "index.refresh_interval": "-1",
        "analysis": {
            "tokenizer": {"chat_spaces": {"type": "whitespace", "max_token_length": 16384}},
            "filter": {"chat_trigram": {"type": "ngram", "min_gram": 3, "max_gram": 3}},
            "analyzer": {"chat_words": {"type": "custom", "tokenizer": "chat_spaces"},
                         "chat_trigrams": {"type": "custom", "tokenizer": "chat_spaces",
                                           "filter": ["chat_trigram"]}}}},
    "mappings": {"dynamic": "strict", "_routing": {"required": True},
                 "_source": {"excludes": ["words"]},
                 "properties": {"app": {"type": "long"}, "chat": {"type": "long"},
                                "number": {"type": "long"}, "ordinal": {"type": "long"},
                                "sent_at": {"type": "long", "index": False, "doc_values": False},
                                "sender": {"type": "keyword"}, "recipients": {"type": "keyword"},
                                "to_all": {"type": "boolean"},
                                "body": {"type": "text", "index": False}, "words": words}}}))
PY
}

variant() { # replicas durability trigrams in_flight
    curl -s -o /dev/null -XDELETE "$URL/$INDEX"
    settings "$1" "$2" "$3" | curl -fsS -o /dev/null -XPUT "$URL/$INDEX" \
        -H 'content-type: application/json' --data-binary @-
    local files=("$WORK"/bulk*.ndjson) start end count
    start=$(date +%s.%N)
    for ((i = 0; i < ${#files[@]}; i += PER_REFRESH)); do
        printf '%s\n' "${files[@]:i:PER_REFRESH}" | xargs -P "$4" -I{} \
            curl -fsS -o /dev/null -XPOST "$URL/_bulk" -H 'content-type: application/x-ndjson' --data-binary @{}
        curl -fsS -o /dev/null -XPOST "$URL/$INDEX/_refresh"
    done
    end=$(date +%s.%N)
    count=$(curl -fsS "$URL/$INDEX/_count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
    python3 -c "print(f'replicas={$1} translog={\"$2\"} trigrams={$3} in_flight={$4}: {$count} messages, {$count / ($end - $start):,.0f} messages/s')"
}

# A warm-up (the JIT), then before (the first backend: OpenSearch's default
# replica, one request at a time) and after, and what each knob alone gives.
variant 0 request 1 4 >/dev/null
variant 1 request 1 1
variant 0 request 1 1
variant 0 request 1 2
variant 0 request 1 4
variant 0 request 1 8
variant 0 async 1 4
variant 0 request 0 4
