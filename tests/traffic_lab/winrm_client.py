"""A WinRM client's login attempts with pywinrm (Debian's python3-winrm, run by /usr/bin/python3): for each
password, open a shell on HOST:PORT over HTTP with NTLM, as Ansible's and evil-winrm's transport does; the
refusals are expected (the lab's server is a stand-in, winrm_standin.py, that never sends NTLM's challenge).

    /usr/bin/python3 tests/traffic_lab/winrm_client.py HOST PORT USER PASSWORD...
"""

import sys

import winrm


def main() -> int:
    host, port, user, passwords = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    refused = 0
    for password in passwords:
        session = winrm.Session(f"http://{host}:{port}/wsman", auth=(user, password), transport="ntlm")
        try:
            session.run_cmd("whoami")
        except Exception as exc:  # any failure: the stand-in refuses every login (NTLM's challenge never comes)
            refused += 1
            print(password, type(exc).__name__)
    return 0 if refused == len(passwords) else 1


if __name__ == "__main__":
    sys.exit(main())
