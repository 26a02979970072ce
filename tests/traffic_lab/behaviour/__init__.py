"""A generator of labelled captures for the behaviour baseline (issue 14), made with real tools in network
namespaces (``../lab.py``'s kind of lab, scaled up):

    topology.py : one bridge, N "VMs" of four roles (web, database, build, desktop), a gateway namespace
                  (the lab's host: router + dnsmasq resolver) and an "internet" namespace that owns
                  203.0.113.0/24 and 198.51.100.0/24
    services.py : the real servers (python http.server, Debian's PostgreSQL, OpenSSH's sshd, dnsmasq,
                  iodined)
    driver.py   : ONE process that plays every VM's benign traffic (sockets opened inside each namespace,
                  pgbench and ssh started from there), seeded, with day-like variation
    attacks.py  : the attacks with real tools (nmap, hping3, arpspoof, macof, iodine, curl/nc, hydra), each
                  timed from the clock around the tool's run
    truth.py    : the truth file (model/behaviour.GroundTruth's shape), the inventory and the summary

benchmarks/make_labelled_captures.py is the command line; docs/behaviour.md ("Labelled captures: how they
are made") says what the splits hold.
"""
