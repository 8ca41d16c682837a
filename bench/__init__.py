"""karaffe's benchmarks against its peers: ``python -m bench`` (``make bench``).

``python -m bench`` runs the foundation benchmark (one JSON API, written
idiomatically in karaffe and in each peer, served by one worker on one core and
loaded by wrk on the other); ``python -m bench json`` runs the JSON-encoder
micro-benchmark. See ``bench/README.md``.
"""
