module qss

go 1.26.8
