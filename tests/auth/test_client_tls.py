"""The host's start does not load the CA bundle into aiohttp's client contexts; the first client request does."""

from __future__ import annotations

import json
import subprocess
import sys

#: Run in a fresh interpreter (this test process imported aiohttp long ago): import aiohttp as the host does, read
#: the default verified client context's CA count, load the deferred certificates, read it again.
SCRIPT = """
import json, ssl
from autopilot_sync.auth.client_tls import client_tls_pending, import_aiohttp_deferring_client_tls, load_client_tls
import_aiohttp_deferring_client_tls()
import aiohttp.connector
verified = aiohttp.connector._SSL_CONTEXT_VERIFIED
before = verified.cert_store_stats()["x509_ca"], client_tls_pending()
load_client_tls()
after = verified.cert_store_stats()["x509_ca"], client_tls_pending()
system = ssl.create_default_context().cert_store_stats()["x509_ca"]
print(json.dumps({"before": before, "after": after, "system": system}))
"""


def test_importing_aiohttp_for_the_host_defers_its_ca_bundle_until_a_client_needs_it() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=120)
    seen = json.loads(done.stdout)
    assert seen["before"] == [0, True]
    # After loading, the client context holds what any default context holds (the patch was undone for others).
    assert seen["after"] == [seen["system"], False]
