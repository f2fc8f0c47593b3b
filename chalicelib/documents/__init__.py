"""The documents of an issued invoice: its CII XML (EN 16931), its readable PDF,
and both joined into one Factur-X PDF/A-3.

Only the invoice use case imports this package: it pulls in lxml, ReportLab,
pypdf and factur-x, which no other function should pay for at cold start.
"""
