"""Reading results: the results files (`results`), statistics (`stats`), the figures (`plots`:
accuracy; `speed`: speed; `figures`: what they share), the report's tables (`tables`), its
deployment section (`deployment`) and the report itself (`markdown`), and `compare`."""
