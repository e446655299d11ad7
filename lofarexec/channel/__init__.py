"""The job channel: the authenticated TCP link between the control node and its node scripts.

:mod:`~lofarexec.channel.protocol` is the wire format and every ``ENV_*`` name a node reads
(standard library only: node scripts import it); :mod:`~lofarexec.channel.logserver` the
receiver on the control node (each connection's frames in
:mod:`~lofarexec.channel.connection`, the job tokens in :mod:`~lofarexec.channel.jobtable`);
:mod:`~lofarexec.channel.exchange` stored arguments, outputs and the run-wide board;
:mod:`~lofarexec.channel.records` how a node's log records are re-emitted.
"""
