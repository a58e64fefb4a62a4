"""Reading results: the results files (`results`), statistics, the figures (`plots`), the markdown
report (`markdown`) and `compare`."""
