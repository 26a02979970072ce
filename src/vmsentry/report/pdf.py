"""PDF from a report page: headless Chromium prints the HTML (its ``@media print`` rules: A4 landscape, no
filters, the summary on a page of its own) to a PDF.

The page is written to a private temporary folder (``mkdtemp``: mode 0700, a random name) and Chromium reads
it from there with the network off; the PDF is read back as bytes and the folder removed, whatever happens.
The page itself fetches nothing and runs no script (templating.CSP), so printing it is printing what it
shows. WeasyPrint would need Cairo and Pango; Chromium is already what the tests render the pages with.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT = 180  # seconds: a 10,000-VM scan report is a few MB of HTML


class PdfError(Exception):
    """No PDF: ``str(exc)`` is one line saying why (Chromium missing, failed, timed out)."""


def browser() -> str | None:
    """Chromium's path (``VMSENTRY_CHROMIUM`` first, then the usual names on PATH), or None."""
    chosen = os.environ.get("VMSENTRY_CHROMIUM")
    if chosen:
        return shutil.which(chosen)
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def html_to_pdf(html: str) -> bytes:
    program = browser()
    if program is None:
        raise PdfError(
            "--format pdf needs Chromium to print the page (apt-get install chromium, or set VMSENTRY_CHROMIUM); "
            "--format html gives the same report to print from a browser"
        )
    folder = tempfile.mkdtemp(prefix="vmsentry-pdf-")
    try:
        page = os.path.join(folder, "report.html")
        out = os.path.join(folder, "report.pdf")
        with open(page, "w", encoding="utf-8") as fh:
            fh.write(html)
        command = [
            program,
            "--headless",
            "--no-sandbox",  # vmsentry runs as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={os.path.join(folder, 'profile')}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={out}",
            f"file://{page}",
        ]
        try:
            res = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise PdfError(f"{program} did not print the page within {TIMEOUT} s") from None
        except OSError as exc:
            raise PdfError(f"{program}: cannot run: {exc.strerror}") from None
        if res.returncode != 0 or not os.path.exists(out) or os.path.getsize(out) == 0:
            last = next((line for line in reversed(res.stderr.splitlines()) if line.strip()), "no message")
            raise PdfError(f"{program} could not print the page (exit {res.returncode}): {last[:200]}")
        with open(out, "rb") as fh:
            return fh.read()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
