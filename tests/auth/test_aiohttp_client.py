"""The host imports aiohttp's server without its client; the first client use completes the same package."""

from __future__ import annotations

import json
import subprocess
import sys

#: Run in a fresh interpreter (this test process imported aiohttp long ago): import aiohttp as the host does, note
#: what loaded, then reach a package-level client name and note it again.
SCRIPT = """
import json, mimetypes, ssl, sys
from autopilot_sync.auth.aiohttp_client import client_pending, complete_aiohttp, import_aiohttp_server_only
import_aiohttp_server_only()
mime_tables_read_at_import = mimetypes.inited or mimetypes._db is not None
from aiohttp.web_fileresponse import CONTENT_TYPES
file_response_type = CONTENT_TYPES.guess_type("page.html")[0]
first_guess = mimetypes.guess_type("data.json")[0]  # the standard library's own lazy init
mime_tables_read_on_use = mimetypes.inited and mimetypes._db is not None
from aiohttp import web
from aiohttp.http import WSMsgType
server_only = {name: name in sys.modules for name in ("aiohttp.client", "aiohttp.connector", "aiohttp.web")}
pending_before = client_pending()
web_before = sys.modules["aiohttp.web"]
import aiohttp
session_class = aiohttp.ClientSession  # a package-level name: completes the package (here, on this thread)
verified = aiohttp.connector._SSL_CONTEXT_VERIFIED
print(json.dumps({
    "server_only": server_only,
    "pending_before": pending_before,
    "pending_after": client_pending(),
    "same_web": aiohttp.web is web_before and sys.modules["aiohttp.web"] is web_before,
    "same_msg_type": aiohttp.WSMsgType is WSMsgType,
    "session_from_client": session_class is sys.modules["aiohttp.client"].ClientSession,
    "again_same": complete_aiohttp() is aiohttp,
    "version": aiohttp.__version__,
    "ca": verified.cert_store_stats()["x509_ca"],
    "system_ca": ssl.create_default_context().cert_store_stats()["x509_ca"],
    "mime": [mime_tables_read_at_import, file_response_type, first_guess, mime_tables_read_on_use],
}))
"""


def test_the_host_imports_aiohttp_server_without_its_client_until_a_client_name_is_reached() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=120)
    seen = json.loads(done.stdout)
    assert seen["server_only"] == {"aiohttp.client": False, "aiohttp.connector": False, "aiohttp.web": True}
    assert seen["pending_before"] is True and seen["pending_after"] is False
    # The completed package is the one the server already used: no module or class imported twice.
    assert seen["same_web"] and seen["same_msg_type"] and seen["session_from_client"] and seen["again_same"]
    assert seen["version"] and seen["version"][0].isdigit()
    # The client's default verified context holds what any default context holds.
    assert seen["ca"] == seen["system_ca"]
    # The system's MIME tables are read by the first guess, not by the import; aiohttp's own table is whole.
    assert seen["mime"] == [False, "text/html", "application/json", True]


def test_importing_the_server_only_is_a_no_op_once_aiohttp_is_whole() -> None:
    import aiohttp

    from autopilot_sync.auth.aiohttp_client import client_pending, import_aiohttp_server_only

    import_aiohttp_server_only()
    assert sys.modules["aiohttp"] is aiohttp and not client_pending()
