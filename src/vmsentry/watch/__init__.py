"""The standing guardian (``vmsentry watch``): live capture on the VM bridges, the detectors, the response
policy, quarantine and an evidence bundle per incident, wired together. It sits above ``report`` and ``act``
(it drives both) and below ``commands`` (the verb only parses options)."""
